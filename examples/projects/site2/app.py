"""The second group of examples/projects/wsgid.yaml: a plain WSGI app."""


def application(environ, start_response):
    body = ("site2: %s in process group %s\n"
            % (environ["PATH_INFO"], environ["wsgid.process_group"])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
