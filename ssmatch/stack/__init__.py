"""The embedded stack: Tansu broker, SecantusDB store and the three services, run as child processes."""
