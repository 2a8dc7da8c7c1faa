//! The exception hierarchy: `scrydb.Error` and one subclass per kind of library error, with
//! the error's fields as attributes (`column`, `row`, `path`, ...).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(scrydb, Error, PyException, "Every error ScryDB raises.");
create_exception!(
    scrydb,
    InvalidInput,
    Error,
    "Data or arguments ScryDB refuses: `signal`, `column` and `row` say where (when known). \
     Nothing of the refused call was stored."
);
create_exception!(
    scrydb,
    InvalidOptions,
    InvalidInput,
    "An option out of range; `option` names it."
);
create_exception!(
    scrydb,
    QueryError,
    Error,
    "A SQL statement that failed to plan or run."
);
create_exception!(
    scrydb,
    ResourcesExhausted,
    QueryError,
    "A query that reached its memory limit."
);
create_exception!(
    scrydb,
    IoError,
    Error,
    "A file operation failed; `op` and `path` say which."
);
create_exception!(
    scrydb,
    Corrupted,
    Error,
    "A damaged file; `path` (and `offset`, when known) say where."
);
create_exception!(
    scrydb,
    UnsupportedVersion,
    Error,
    "A file of a newer format version than this build reads; `path`, `found`, `supported`."
);
create_exception!(scrydb, TooLarge, Error, "A value past a format limit.");
create_exception!(
    scrydb,
    Locked,
    Error,
    "Another process writes to the database; `holder` says which (pid and command)."
);
create_exception!(
    scrydb,
    Poisoned,
    Error,
    "The database refuses writes after an earlier failure; the message says how to recover."
);
create_exception!(scrydb, Closed, Error, "The database was closed.");
create_exception!(
    scrydb,
    ReadOnly,
    Error,
    "A write on a database opened read-only."
);
create_exception!(
    scrydb,
    NotAStore,
    Error,
    "A read-only open of a directory that holds no ScryDB store."
);

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("InvalidInput", py.get_type::<InvalidInput>())?;
    m.add("InvalidOptions", py.get_type::<InvalidOptions>())?;
    m.add("QueryError", py.get_type::<QueryError>())?;
    m.add("ResourcesExhausted", py.get_type::<ResourcesExhausted>())?;
    m.add("IoError", py.get_type::<IoError>())?;
    m.add("Corrupted", py.get_type::<Corrupted>())?;
    m.add("UnsupportedVersion", py.get_type::<UnsupportedVersion>())?;
    m.add("TooLarge", py.get_type::<TooLarge>())?;
    m.add("Locked", py.get_type::<Locked>())?;
    m.add("Poisoned", py.get_type::<Poisoned>())?;
    m.add("Closed", py.get_type::<Closed>())?;
    m.add("ReadOnly", py.get_type::<ReadOnly>())?;
    m.add("NotAStore", py.get_type::<NotAStore>())?;
    Ok(())
}

/// `err` with attributes set on its exception value.
fn with_attrs(err: PyErr, attrs: &[(&str, Option<Py<PyAny>>)]) -> PyErr {
    Python::attach(|py| {
        let value = err.value(py);
        for (name, v) in attrs {
            let v = v.as_ref().map_or_else(|| py.None(), |v| v.clone_ref(py));
            // Setting an attribute on a fresh exception instance does not fail.
            let _ = value.setattr(*name, v);
        }
    });
    err
}

fn obj<'py, T: IntoPyObject<'py>>(py: Python<'py>, v: T) -> Option<Py<PyAny>> {
    use pyo3::IntoPyObjectExt;
    v.into_py_any(py).ok()
}

/// The exception for an engine error.
pub fn engine_err(e: &scrydb::Error) -> PyErr {
    use scrydb::Error as E;
    let msg = e.to_string();
    Python::attach(|py| match e {
        E::InvalidBatch {
            signal,
            column,
            row,
            ..
        } => with_attrs(
            InvalidInput::new_err(msg),
            &[
                ("signal", obj(py, signal.name())),
                ("column", obj(py, column.as_str())),
                ("row", row.and_then(|r| obj(py, r))),
            ],
        ),
        E::InvalidOtlp { .. } => with_attrs(
            InvalidInput::new_err(msg),
            &[("signal", None), ("column", None), ("row", None)],
        ),
        E::InvalidOptions { option, .. } => with_attrs(
            InvalidOptions::new_err(msg),
            &[
                ("option", obj(py, *option)),
                ("signal", None),
                ("column", None),
                ("row", None),
            ],
        ),
        E::Io { op, path, .. } => with_attrs(
            IoError::new_err(msg),
            &[
                ("op", obj(py, *op)),
                ("path", obj(py, path.display().to_string())),
            ],
        ),
        E::Corrupted { path, offset, .. } => with_attrs(
            Corrupted::new_err(msg),
            &[
                ("path", obj(py, path.display().to_string())),
                ("offset", offset.and_then(|o| obj(py, o))),
            ],
        ),
        E::UnsupportedVersion {
            path,
            found,
            supported,
        } => with_attrs(
            UnsupportedVersion::new_err(msg),
            &[
                ("path", obj(py, path.display().to_string())),
                ("found", obj(py, *found)),
                ("supported", obj(py, *supported)),
            ],
        ),
        E::TooLarge { .. } => TooLarge::new_err(msg),
        E::Locked { dir, holder, .. } => with_attrs(
            Locked::new_err(msg),
            &[
                ("path", obj(py, dir.display().to_string())),
                ("holder", holder.as_deref().and_then(|h| obj(py, h))),
            ],
        ),
        E::Poisoned { reason } => with_attrs(
            Poisoned::new_err(msg),
            &[("reason", obj(py, reason.as_str()))],
        ),
        E::Closed => Closed::new_err(msg),
        E::ReadOnly { dir } => with_attrs(
            ReadOnly::new_err(msg),
            &[("path", obj(py, dir.display().to_string()))],
        ),
        E::NotAStore { dir } => with_attrs(
            NotAStore::new_err(msg),
            &[("path", obj(py, dir.display().to_string()))],
        ),
        // The engine names a segment being written by its temporary name: a failure there
        // is a failed write (a full disk), not damage.
        E::Parquet { path, .. } if path.extension().is_some_and(|e| e == "tmp") => with_attrs(
            IoError::new_err(msg),
            &[
                ("op", obj(py, "write")),
                ("path", obj(py, path.display().to_string())),
            ],
        ),
        E::Parquet { path, .. } => with_attrs(
            Corrupted::new_err(msg),
            &[
                ("path", obj(py, path.display().to_string())),
                ("offset", None),
            ],
        ),
        _ => Error::new_err(msg),
    })
}

/// The exception for a SQL-layer error.
pub fn sql_err(e: &scrydb::sql::Error) -> PyErr {
    match e {
        scrydb::sql::Error::Engine(inner) => engine_err(inner),
        scrydb::sql::Error::ResourcesExhausted(_) => ResourcesExhausted::new_err(e.to_string()),
        _ => QueryError::new_err(e.to_string()),
    }
}

/// The exception for a failed diagnosis: the failed query's own exception (with its
/// attributes), plus `step` and `sql` saying which query of the diagnosis failed.
pub fn diagnose_err(e: &scrydb::diagnose::Error) -> PyErr {
    match e {
        scrydb::diagnose::Error::Query { step, sql, source } => Python::attach(|py| {
            with_attrs(
                sql_err(source),
                &[
                    ("step", obj(py, format!("{step:?}"))),
                    ("sql", obj(py, sql.as_str())),
                ],
            )
        }),
        _ => Error::new_err(e.to_string()),
    }
}

/// `InvalidInput` for an argument the bindings themselves refuse (no column or row).
pub fn invalid(msg: impl Into<String>) -> PyErr {
    let msg: String = msg.into();
    with_attrs(
        InvalidInput::new_err(msg),
        &[("signal", None), ("column", None), ("row", None)],
    )
}
