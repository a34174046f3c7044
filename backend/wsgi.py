"""WSGI entry of the web process: `gunicorn --worker-class gthread backend.wsgi:app`.

Socket.IO runs in threading mode on the same port: each connected screen holds one gunicorn thread
(simple-websocket), so `--threads` must exceed the number of screens plus concurrent HTTP requests.
"""
from backend.web import create_app

app = create_app()
