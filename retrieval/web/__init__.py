"""The HTTP API and web page over a collection (``cli.py serve``): :func:`retrieval.web.app.create_app`."""
