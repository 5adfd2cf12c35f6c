"""For the slow-clients test: /big and /gen as in big.py, everything else says hello."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import big  # noqa: E402
import hello  # noqa: E402


def application(environ, start_response):
    if environ.get("PATH_INFO") in ("/big", "/gen"):
        return big.application(environ, start_response)
    return hello.application(environ, start_response)
