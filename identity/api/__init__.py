"""`identity serve`: the HTTP API over the application core (one App per server process).

- app: the FastAPI app (create_api): lifespan, middleware, routers, error handlers;
- context: what requests share (ApiContext: the App, the deployment, the inference threads, the
  background worker) and the `Ctx` dependency; routers import it, never `app`;
- errors: ApiError and the HTTP status of every library error;
- auth: API keys and roles per route (`caller`);
- schemas: the pydantic models of every request and response (`/openapi.json`);
- contract: each route's operation id, bearer key and error statuses in `/openapi.json`;
- docs: `/docs`, Swagger UI served from its package (offline);
- openapi_snapshot: `/openapi.json` written to tests/openapi.json, which a test compares;
- uploads: request bodies read with a size limit;
- metrics: Prometheus text for `/metrics`;
- routes_*: one module per group of routes, each calling services only.
"""
