"""The plan model every service shares.

``loader`` reads plan text and data files into a checked ``schemas.plan.Plan``;
``scenarios`` checks flows, setup, extraction and data; ``templating`` and ``extract``
compile ``{{var}}`` templates and extractors/checks exactly as the engine runs them;
``names`` gives the request names a plan reports; ``profile`` turns a plan into rate
and virtual-user profiles. Pure: no NATS, no event loop. Imported by the coordinator,
the generator, the CLI and the UI; imports only ``schemas`` and ``services.common``.
"""
