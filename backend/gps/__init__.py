"""GPS device gateways (定位接入): JT/T 808 and OsmAnd in, batched positions out to Redis."""
