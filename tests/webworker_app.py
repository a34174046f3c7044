"""A tiny WSGI app for the web worker's tests: answers the id of the thread that served the request."""
import threading


def app(environ, start_response):
    body = str(threading.get_ident()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
