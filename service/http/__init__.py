"""The HTTP face of the service: the app, its middleware, routes, schemas, keys and error answers."""
