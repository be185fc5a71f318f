"""Sinks: where a finished PHFE job's results are sent besides its run directory."""
