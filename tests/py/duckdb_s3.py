"""DuckDB reading a ScryDB store's segments straight from S3-compatible object storage.

Loads the httpfs extension from its PyPI package (duckdb-extension-httpfs, the version of
the installed duckdb; no download), points DuckDB at the endpoint and prints
`count,sum(duration_ns),count(DISTINCT service_name)` over the given span segments.

Usage: python duckdb_s3.py HOST:PORT s3://bucket/prefix/spans/.../<id>.parquet ...
"""

import pathlib
import sys

import duckdb
import duckdb_extension_httpfs


def main():
    endpoint, files = sys.argv[1], sys.argv[2:]
    ext = (
        pathlib.Path(duckdb_extension_httpfs.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "httpfs.duckdb_extension"
    )
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    con.sql(f"LOAD '{ext}'")
    con.sql(
        f"""CREATE SECRET (TYPE s3, KEY_ID 'test', SECRET 'test', REGION 'us-east-1',
            ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)"""
    )
    listed = ", ".join(f"'{f}'" for f in files)
    row = con.sql(
        f"SELECT count(*), sum(duration_ns), count(DISTINCT service_name) "
        f"FROM read_parquet([{listed}])"
    ).fetchone()
    print(",".join(str(v) for v in row))


if __name__ == "__main__":
    main()
