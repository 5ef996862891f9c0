"""`identity serve`: the HTTP API over the application core (one App per server process).

- server: the FastAPI app, its state (ApiContext) and error handling;
- auth: API keys and roles per route;
- schemas: the pydantic models of every request and response (`/openapi.json`);
- uploads: request bodies read with a size limit;
- metrics: Prometheus text for `/metrics`;
- routes_*: one module per group of routes, each calling services only.
"""
