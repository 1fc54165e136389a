"""The aiohttp application: middleware, pages, JSON API and the WebSocket."""
