"""`identity serve`: the HTTP API over the application core (one App per server process).

- server: the FastAPI app, its state (ApiContext) and error handling;
- auth: API keys and roles per route;
- schemas: the pydantic models of every request and response (`/openapi.json`);
- contract: each route's operation id, bearer key and error statuses in `/openapi.json`;
- docs: `/docs`, Swagger UI served from its package (offline);
- openapi_snapshot: `/openapi.json` written to tests/openapi.json, which a test compares;
- uploads: request bodies read with a size limit;
- metrics: Prometheus text for `/metrics`;
- routes_*: one module per group of routes, each calling services only.
"""
