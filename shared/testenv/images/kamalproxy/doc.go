// Command kamal-proxy is a stand-in for basecamp/kamal-proxy in tests (the
// real one cannot be had here): the same command line for what the probe
// uses, in a FROM-scratch image at /usr/local/bin/kamal-proxy.
//
//	kamal-proxy [run] [--http-port 80]
//	    serves HTTP and reverse-proxies each request to the target of the
//	    service whose --host matches the request's Host (a service deployed
//	    without --host takes any host); 404 when none does
//	kamal-proxy deploy SERVICE --target HOST:PORT [--host H]... [--deploy-timeout 30s]
//	        [--health-check-path /up] [--health-check-interval 1s] [--health-check-timeout 5s]
//	    GETs http://HOST:PORT/up until it answers 200 (like the real one);
//	    exits 1 with "Error: target failed to become healthy ..." when that
//	    does not happen within the deploy timeout, else switches the service
//	    to the target and exits 0
//	kamal-proxy list
//	    prints a line per service: name, host, target, state, TLS
//
// The real proxy's deploy is an RPC to the running server; here deploy
// writes the routing state file (atomically: temporary file, then rename)
// that the server reads for every request, so the switch takes effect at
// once. The file is $KAMAL_PROXY_STATE, default
// /var/run/kamal-proxy/state.json (the directory is created when missing:
// a scratch image has none).
package main
