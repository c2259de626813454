"""Staff portal `/portal` (French, Jinja2 + htmx). Mounted by `api.app.create_app`."""

from api.portal.routes import router

__all__ = ["router"]
