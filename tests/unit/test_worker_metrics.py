"""``idp worker``'s own /metrics: its mail and back-channel counters, to the token or the listed
networks only, on the port the district chose (none by default)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from ipaddress import ip_network

import pytest
import requests

from idp.config import ConfigError, Settings
from idp.metrics import BACKCHANNEL_RETRIES, MAILS
from idp.worker.metrics import serve_worker_metrics
from tests.redis_server import free_port

TOKEN = "worker-metrics-token-0123456789"


@pytest.fixture
def url() -> Iterator[str]:
    settings = Settings(worker_metrics_port=free_port(), metrics_token=TOKEN, metrics_allow=())
    server = serve_worker_metrics(settings, host="127.0.0.1")
    assert server is not None
    try:
        yield f"http://127.0.0.1:{settings.worker_metrics_port}"
    finally:
        server.shutdown()
        server.server_close()


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, text[:1000]
    return float(match.group(1))


def test_the_worker_counts_what_it_sent_and_retried(url: str):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = requests.get(f"{url}/metrics", headers=auth, timeout=5).text
    MAILS.labels(outcome="sent").inc()
    BACKCHANNEL_RETRIES.inc(2)

    after = requests.get(f"{url}/metrics", headers=auth, timeout=5)
    assert after.status_code == 200 and after.headers["Content-Type"].startswith("text/plain")
    sent = 'idp_mails_total{outcome="sent"}'
    assert value(after.text, sent) == (value(before, sent) if sent in before else 0) + 1
    retries = "idp_backchannel_retries_total"
    assert value(after.text, retries) == value(before, retries) + 2


def test_anyone_without_the_token_is_refused(url: str):
    refused = requests.get(f"{url}/metrics", timeout=5)
    wrong = requests.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=5)
    elsewhere = requests.get(f"{url}/other", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)

    assert (refused.status_code, wrong.status_code, elsewhere.status_code) == (403, 403, 404)
    assert "idp_" not in refused.text + wrong.text


def test_a_listed_network_needs_no_token():
    settings = Settings(worker_metrics_port=free_port(), metrics_allow=(ip_network("127.0.0.0/8"),))
    server = serve_worker_metrics(settings, host="127.0.0.1")
    assert server is not None
    try:
        response = requests.get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200 and "idp_mails_total" in response.text


def test_no_port_no_server_and_a_taken_port_is_a_clear_error():
    assert serve_worker_metrics(Settings()) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"IDP_WORKER_METRICS_PORT={port}"):
            serve_worker_metrics(Settings(worker_metrics_port=port), host="127.0.0.1")
