"""The HTTP API and web page over a collection (``cli.py serve``): :func:`web.app.create_app`."""
