"""Serving (SPEC §10): the export bundle, the WebSocket server and its browser client."""
