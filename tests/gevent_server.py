"""
`tests.retiringapp` served by gevent's WSGIServer (one greenlet per
connection), monkey-patched, in a process of its own: gevent must patch
before anything else is imported. test_retiring.py starts it and stops it.

It says where it listens on stderr as gunicorn does ("Listening at:
http://127.0.0.1:<port>"), and the app logs its ``worker-ready`` event
there once it is built; then it serves until terminated.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

import structlog  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from tests.retiringapp import create_app  # noqa: E402
from tests.serverapp import configure_json_logs  # noqa: E402


def main() -> None:
    configure_json_logs()
    app, _ = create_app()
    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    os.write(
        2, f"Listening at: http://127.0.0.1:{server.server_port}\n".encode()
    )
    structlog.get_logger("gevent_server").info(
        "worker-ready",
        pid=os.getpid(),
        patched=monkey.is_module_patched("threading"),
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
