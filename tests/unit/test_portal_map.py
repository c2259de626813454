"""`docs/portal-map.md` names every route module of `api/routes/` (the page that offers its operations, or
why it is left out): a module added later without a line in the map fails here."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_api_route_module_is_in_the_portal_map() -> None:
    modules = sorted(p.stem for p in (ROOT / "api" / "routes").glob("*.py") if p.stem != "__init__")
    assert "billing" in modules and "subscriptions" in modules
    text = (ROOT / "docs" / "portal-map.md").read_text(encoding="utf-8")
    missing = [m for m in modules if f"(`{m}`" not in text and f", `{m}`" not in text]
    assert not missing, f"docs/portal-map.md does not name the route module(s) {missing}"
