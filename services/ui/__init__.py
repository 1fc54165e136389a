"""The web UI: live view over WebSocket, run control and reports, a client of the bus."""
