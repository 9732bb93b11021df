"""The one seam between a node and the network: listen or dial, and get a websocket with the
verified identity of whoever is on the other end (TLS), within bounds on connections."""
