"""The UI's aiohttp app in process with a stand-in coordinator client: bad browser
input gets clear JSON errors and never takes the app down."""

from __future__ import annotations

from types import SimpleNamespace

from aiohttp.test_utils import TestClient, TestServer

from schemas.errors import Unavailable
from services.ui.app.routes import build_app
from services.ui.config import Config
from services.ui.fanout import Hub
from services.ui.state import State


class DownCoordinator:
    async def call(self, *args, **kwargs):
        raise Unavailable("no coordinator is answering")

    async def rate(self, *args, **kwargs):
        raise Unavailable("no coordinator is answering")


def make_service(**config) -> SimpleNamespace:
    return SimpleNamespace(config=Config(**config), api=DownCoordinator(), hub=Hub(), state=State(),
                           nc=SimpleNamespace(is_connected=True))


async def test_bad_requests_get_json_errors_with_fields() -> None:
    async with TestClient(TestServer(build_app(make_service()))) as client:
        csrf = {"X-CSRF-Token": "c", "Cookie": "surge_csrf=c"}
        cases = [
            ("POST", "/api/runs/abc/rate", b'{"rate": "x"}', 400, "rate"),
            ("POST", "/api/runs/abc/rate", b'{"rate": 1, "extra": 2}', 400, "extra"),
            ("POST", "/api/runs/ABC/rate", b'{"rate": 1}', 400, "run_id"),
            ("POST", "/api/runs", b'{"plan": "- a"}', 400, None),
            ("POST", "/api/runs", b"not json", 400, None),
            ("GET", "/api/runs?limit=0", None, 400, "limit"),
            ("GET", "/api/compare?runs=a", None, 400, "runs"),
            ("POST", "/api/runs/abc/rate", b'{"rate": 1}', 503, None),
            ("GET", "/api/nope", None, 404, None),
        ]
        for method, path, body, status, field in cases:
            resp = await client.request(method, path, data=body, headers=csrf)
            data = await resp.json()
            assert resp.status == status, (path, data)
            assert set(data["error"]) >= {"code", "message"}
            assert data["error"].get("field") == field, (path, data)
        resp = await client.post("/api/runs", data=b"x" * (2 * 1024 * 1024), headers=csrf)
        assert resp.status == 413
        resp = await client.get("/api/health")
        assert resp.status == 200


async def test_control_needs_csrf_and_same_origin() -> None:
    async with TestClient(TestServer(build_app(make_service()))) as client:
        resp = await client.post("/api/runs/abc/stop")
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "csrf"
        resp = await client.post("/api/runs/abc/stop", headers={
            "X-CSRF-Token": "c", "Cookie": "surge_csrf=c", "Origin": "http://evil.example"})
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "bad_origin"


async def test_plan_errors_point_at_the_yaml_line() -> None:
    async with TestClient(TestServer(build_app(make_service()))) as client:
        resp = await client.post("/api/plans/validate", json={"plan": "name: x\nrate: [1,\n"},
                                 headers={"X-CSRF-Token": "c", "Cookie": "surge_csrf=c"})
        data = await resp.json()
        assert resp.status == 400 and data["error"]["code"] == "invalid_plan"
        assert data["error"]["line"] == 3


async def test_healthz_answers_probes_without_the_token_and_nothing_else_does() -> None:
    service = make_service(ui_token="s3cret")
    async with TestClient(TestServer(build_app(service))) as client:
        resp = await client.get("/healthz")
        assert resp.status == 200 and await resp.json() == {"ok": True, "nats": True}
        for path in ("/api/health", "/api/runs", "/healthz/x", "/static/js/common.js"):
            resp = await client.get(path, allow_redirects=False)
            assert resp.status in (302, 401), path
        service.nc.is_connected = False  # NATS down: alive, but not ready
        resp = await client.get("/healthz")
        assert resp.status == 200 and (await resp.json())["nats"] is False
        resp = await client.get("/healthz?ready")
        assert resp.status == 503 and (await resp.json())["ok"] is False


async def test_import_converts_with_the_importers_and_reads_no_server_file() -> None:
    import yaml

    async with TestClient(TestServer(build_app(make_service()))) as client:
        csrf = {"X-CSRF-Token": "c", "Cookie": "surge_csrf=c"}
        body = {"kind": "curl", "source": "curl http://h:1/a --data-urlencode 'q=a b&c'\n"
                                          "curl http://h:1/b -d @/etc/hostname"}
        resp = await client.post("/api/plans/import", json=body, headers=csrf)
        data = await resp.json()
        assert resp.status == 200, data
        plan = yaml.safe_load(data["plan"])
        assert [s["body"] for s in plan["flows"][0]["steps"]] == ["q=a+b%26c"]
        assert data["plan"].startswith("# Imported by `surge import` from curl upload.")
        assert data["unmapped"] == ["command 2: file '/etc/hostname' is not read here (import with "
                                    "`surge import` beside the file); the request is not sent"]
        assert data["everything_mapped"] is False
        for bad, status, field in [({"kind": "wget", "source": "x"}, 400, "kind"),
                                   ({"kind": "har", "source": "{}"}, 400, "source")]:
            resp = await client.post("/api/plans/import", json=bad, headers=csrf)
            assert (resp.status, (await resp.json())["error"]["field"]) == (status, field)
