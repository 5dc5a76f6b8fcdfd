"""Request and response bodies of the HTTP API (pydantic), with the examples shown in OpenAPI.

Only the routes use these; the service's logic takes and returns plain
dataclasses (``Observation``, ``Forecast``, ``SessionReply``, ...). One module
per concern: ``requests`` (what clients send to forecast and to stream into
sessions), ``responses`` (what those routes answer, and the error shape),
``bulk`` (many items in one body) and ``operations`` (models, prices, retrain
jobs, health).
"""
