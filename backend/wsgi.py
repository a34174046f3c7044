"""WSGI entry of the web process: `gunicorn -k gthread backend.wsgi:app`."""
from backend.web import create_app

app = create_app()
