"""The application core: what every entry point (CLI, worker, HTTP server) opens once per process.

- runtime: the one SQL engine and session factory, and the schema policy (schema);
- registry: the only code that resolves, records and activates models;
- binding: which vector store the deployment is bound to;
- actor: who is acting, for the logs.

Services receive a Runtime, or a Deployment (services.deployment) built on it for one model.
"""
