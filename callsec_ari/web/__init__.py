"""HTTP API and agent desk (aiohttp): see :mod:`callsec_ari.web.app`."""
