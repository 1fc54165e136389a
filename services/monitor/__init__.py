"""The monitor: one per host. Samples the host with psutil, publishes it on the bus,
writes host samples and live run snapshots to InfluxDB, raises threshold alerts."""
