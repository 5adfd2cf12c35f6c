-- wrk script: POST a 1 MiB body (to /echo, given on the command line).
wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
