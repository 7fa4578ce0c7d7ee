"""Runs only in the ingress replica: the ASGI app, its middleware, routes and input checks."""
