"""The analytics workbench: notebooks of DuckDB SQL and markdown cells over a sandboxed snapshot."""
