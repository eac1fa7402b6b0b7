"""Image URLs in an import reach public addresses only (security review #11, D3).

No loopback, private or metadata address, not through a name, a redirect or another scheme; an allowed host
(IMPORT_IMAGE_ALLOWED_HOSTS) may be private; and the import report is no port scanner: refused and failed
connections read the same whatever the port's state.
"""

import io
import json
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from labelapp.catalogue.models import ImportKind, ImportRowIssue, ImportRun, Product, RowOutcome
from labelapp.catalogue.services.imports.fetch import address_is_public
from labelapp.catalogue.services.imports.products import products_import
from labelapp.catalogue.services.imports.runs import import_run_create

pytestmark = pytest.mark.django_db

REFUSED = "image URL refused: not a public address"
FAILED = "image could not be fetched"


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    return buffer.getvalue()


class _CountingServer(ThreadingHTTPServer):
    """A loopback HTTP server that counts every connection it accepts, HTTP or not."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, routes: dict):
        self.routes = routes
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    def verify_request(self, request, client_address) -> bool:
        self.connections += 1
        return True

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status, headers, body = self.server.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def listen():
    """Start loopback HTTP listeners: listen() serves /img.png, listen(routes) what it is told."""
    servers = []

    def start(routes: dict | None = None) -> _CountingServer:
        server = _CountingServer(routes or {"/img.png": (200, {"Content-Type": "image/png"}, png_bytes())})
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_dns(monkeypatch):
    """Make names resolve where a test says (names[name] = address); count every lookup by name."""
    real_getaddrinfo = socket.getaddrinfo
    names: dict[str, str] = {}
    lookups: Counter = Counter()

    def getaddrinfo(host, port, *args, **kwargs):
        lookups[host] += 1
        return real_getaddrinfo(names.get(host, host), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names, lookups


@pytest.fixture(autouse=True)
def _short_timeouts(settings):
    settings.IMPORT_IMAGE_TIMEOUT_S = 2
    settings.IMPORT_IMAGE_ALLOWED_HOSTS = []


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def import_images(tmp_path: Path, urls: dict[str, str]) -> ImportRun:
    """Import one product per (external id, image URL); return the finished run."""
    path = tmp_path / "feed.jsonl"
    path.write_text("".join(json.dumps({"id": key, "title": f"Product {key}", "image_link": url}) + "\n"
                            for key, url in urls.items()))
    run = import_run_create(kind=ImportKind.PRODUCTS, file_name=str(path), source="shop")
    return products_import(import_run=run, path=path)


def image_errors(run: ImportRun) -> dict[str, str]:
    return dict(Product.objects.filter(import_run=run).values_list("external_id", "image_error"))


def test_a_loopback_image_url_is_refused_in_the_report_and_never_contacted(tmp_path, listen):
    server = listen()

    run = import_images(tmp_path, {"p1": f"http://127.0.0.1:{server.port}/img.png"})

    assert (run.rows_created, run.images_stored, run.images_failed) == (1, 0, 1)  # the row is still imported
    assert image_errors(run) == {"p1": REFUSED}
    warnings = list(ImportRowIssue.objects.filter(import_run=run, outcome=RowOutcome.WARNING)
                    .values_list("reason", flat=True))
    assert warnings == [f"image for 'p1' not stored: {REFUSED}"]
    assert server.connections == 0


def test_a_closed_port_reads_exactly_like_an_open_one(tmp_path, listen):
    server = listen()

    run = import_images(tmp_path, {"open": f"http://127.0.0.1:{server.port}/img.png",
                                   "closed": f"http://127.0.0.1:{free_port()}/img.png"})

    assert image_errors(run) == {"open": REFUSED, "closed": REFUSED}
    assert server.connections == 0


def test_on_an_allowed_host_closed_silent_and_hanging_up_ports_read_the_same(tmp_path, settings):
    """What an allowed (private) host's ports do cannot be told apart from the report either."""
    settings.IMPORT_IMAGE_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.IMPORT_IMAGE_TIMEOUT_S = 0.5
    with socket.socket() as silent, socket.socket() as hangs_up:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts (the kernel does) and never answers
        hangs_up.bind(("127.0.0.1", 0))
        hangs_up.listen()
        closer = threading.Thread(target=lambda: hangs_up.accept()[0].close(), daemon=True)
        closer.start()

        run = import_images(tmp_path, {"closed": f"http://127.0.0.1:{free_port()}/img.png",
                                       "silent": f"http://127.0.0.1:{silent.getsockname()[1]}/img.png",
                                       "hangs-up": f"http://127.0.0.1:{hangs_up.getsockname()[1]}/img.png"})
        closer.join(timeout=5)

    assert image_errors(run) == {"closed": FAILED, "silent": FAILED, "hangs-up": FAILED}


@pytest.mark.parametrize("host", ["images.shop-cdn.example", "localhost"])
def test_a_public_looking_name_that_resolves_to_loopback_is_refused(tmp_path, listen, fake_dns, host):
    names, _ = fake_dns
    names["images.shop-cdn.example"] = "127.0.0.1"
    server = listen()

    run = import_images(tmp_path, {"p1": f"http://{host}:{server.port}/img.png"})

    assert image_errors(run) == {"p1": REFUSED}
    assert server.connections == 0


def test_a_name_with_any_private_address_is_refused(tmp_path, listen, monkeypatch):
    server = listen()

    def getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    run = import_images(tmp_path, {"p1": f"http://mixed.example:{server.port}/img.png"})

    assert image_errors(run) == {"p1": REFUSED}
    assert server.connections == 0


@pytest.mark.parametrize(("scheme", "error"), [
    ("http", REFUSED),
    ("ftp", "image URL refused: scheme 'ftp' is not allowed (http or https only)"),
])
def test_a_redirect_from_an_allowed_host_to_loopback_is_refused_on_the_redirect(tmp_path, listen, fake_dns,
                                                                               settings, scheme, error):
    names, _ = fake_dns
    names["cdn.internal"] = "127.0.0.1"
    settings.IMPORT_IMAGE_ALLOWED_HOSTS = ["cdn.internal"]
    target = listen()
    redirector = listen({"/img.png": (302, {"Location": f"{scheme}://127.0.0.1:{target.port}/img.png"}, b"")})

    run = import_images(tmp_path, {"p1": f"http://cdn.internal:{redirector.port}/img.png"})

    assert image_errors(run) == {"p1": error}
    assert (redirector.connections, target.connections) == (1, 0)


def test_the_allow_list_lets_its_hosts_through_and_no_other(tmp_path, listen, fake_dns, settings):
    names, lookups = fake_dns
    names["cdn.internal"] = "127.0.0.1"
    settings.IMPORT_IMAGE_ALLOWED_HOSTS = ["CDN.internal"]  # host names compare case-insensitively
    allowed, other = listen(), listen()

    run = import_images(tmp_path, {"allowed": f"http://cdn.internal:{allowed.port}/img.png",
                                   "other": f"http://127.0.0.1:{other.port}/img.png"})

    assert (run.images_stored, run.images_failed) == (1, 1)
    assert Product.objects.get(external_id="allowed").image.name == "products/shop/allowed.png"
    assert image_errors(run) == {"allowed": "", "other": REFUSED}
    assert (allowed.connections, other.connections) == (1, 0)
    assert lookups["cdn.internal"] == 1  # resolved once; the connection went to that answer (no rebinding)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/img.png", "gopher://127.0.0.1:6379/_INFO"])
def test_schemes_other_than_http_and_https_are_refused(tmp_path, url):
    run = import_images(tmp_path, {"p1": url})

    scheme = url.split(":", 1)[0]
    assert image_errors(run) == {"p1": f"image URL refused: scheme '{scheme}' is not allowed (http or https only)"}


@pytest.mark.parametrize("url", ["http://[::1/img.png", "http://images.example:99999/img.png", "http:///img.png"])
def test_a_malformed_url_is_refused_and_the_row_kept(tmp_path, url):
    run = import_images(tmp_path, {"p1": url})

    assert run.status == "succeeded" and run.rows_created == 1
    assert image_errors(run) == {"p1": "image URL refused: not a valid URL"}


@pytest.mark.parametrize("address", [
    "10.0.0.1", "10.255.255.254", "172.16.0.1", "192.168.1.10", "127.0.0.1", "127.8.8.8", "0.0.0.0",
    "169.254.169.254", "100.64.0.1", "224.0.0.251", "240.0.0.1", "255.255.255.255", "192.0.2.1",
    "::1", "::", "fe80::1", "fe80::1%1", "fc00::1", "fd12:3456::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254", "2002:7f00:1::1", "64:ff9b::a9fe:a9fe",
    "not an address",
])
def test_address_check_refuses_what_is_not_global(address):
    assert address_is_public(address) is False


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808"])
def test_address_check_accepts_public_addresses(address):
    assert address_is_public(address) is True
