"""The application core: what every entry point (CLI, worker, HTTP server) opens once per process.

- core: the App, owning the one SQL engine and session factory, the face pipelines and the
  vector collections (lazily, per model);
- schema: the one place the schema changes, and by which policy;
- registry: the only code that resolves, records and activates models;
- binding: which vector store the deployment is bound to;
- actor: who is acting, for the logs;
- deployment: the active model's view of the App (App.deployment()), prepared for reads or for writes;
- templates: the person templates a deployment prepared for writes back-fills;
- collections: one model's collections as the App holds them.

Every service receives the App.
"""
