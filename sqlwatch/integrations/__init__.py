"""Where sqlwatch meets the user's daily loop: pytest, ASGI and WSGI applications.

Each integration only opens and closes scopes (watches); nothing in the core
depends on this package. No module here imports a web framework: the
middlewares speak plain ASGI and WSGI and read the route template from what the
framework leaves in the ASGI scope or the WSGI environ, so Starlette, FastAPI
and Flask stay optional. The pytest plugin imports nothing but pytest until a
test uses it (see ``pytest_plugin``).
"""
