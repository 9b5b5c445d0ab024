//! The rules a [`MasterSpec`] must follow, in one place for the two that check them: the state
//! machine (which words a broken rule as Sentinel does) and the config file (which names the
//! key). Each caller words the [`SpecProblem`] itself.

use super::command::MasterSpec;
use super::limits::{Limits, MAX_NAME_LEN, MAX_SECRET_LEN};

/// Longest script path accepted, in bytes.
pub const MAX_SCRIPT_LEN: usize = 4096;

/// A field of a [`MasterSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecField {
    /// `name`.
    Name,
    /// The host of `addr`.
    Addr,
    /// `auth_user`.
    AuthUser,
    /// `auth_pass`.
    AuthPass,
    /// `quorum`.
    Quorum,
    /// `down_after_ms`.
    DownAfter,
    /// `failover_timeout_ms`.
    FailoverTimeout,
    /// `parallel_syncs`.
    ParallelSyncs,
    /// `notification_script`.
    NotificationScript,
    /// `client_reconfig_script`.
    ClientReconfigScript,
}

/// The first rule a spec breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecProblem {
    /// A script path that is not absolute, is longer than [`MAX_SCRIPT_LEN`] or holds a
    /// control character.
    Script {
        /// Which script.
        field: SpecField,
        /// The path.
        path: String,
    },
    /// Longer than the replicated state's limit (only while [`Limits`] are in force).
    TooLong {
        /// Name, address host, ACL user or password.
        field: SpecField,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The address host holds a quote or a backslash (only while [`Limits`] are in force).
    HostQuote,
    /// The name is empty or holds whitespace or a control character.
    BadName,
    /// Quorum, down-after, failover-timeout or parallel-syncs is 0.
    Zero(SpecField),
}

/// Whether `path` is acceptable as a script (empty means none).
pub(crate) fn script_ok(path: &str) -> bool {
    path.is_empty()
        || path.starts_with('/')
            && path.len() <= MAX_SCRIPT_LEN
            && !path.chars().any(|c| c.is_control())
}

/// The first rule `spec` breaks under `lim`, in the order the state machine has always
/// checked them (which decides the message a spec breaking several rules gets).
pub(crate) fn check_spec(spec: &MasterSpec, lim: Limits) -> Result<(), SpecProblem> {
    for (field, s) in [
        (SpecField::NotificationScript, &spec.notification_script),
        (
            SpecField::ClientReconfigScript,
            &spec.client_reconfig_script,
        ),
    ] {
        if let Some(path) = s.as_deref().filter(|p| !script_ok(p)) {
            return Err(SpecProblem::Script {
                field,
                path: path.to_string(),
            });
        }
    }
    if lim.on {
        let host = &spec.addr.host;
        for (field, value, max) in [
            (SpecField::Name, spec.name.as_str(), MAX_NAME_LEN),
            (SpecField::Addr, host.as_str(), MAX_NAME_LEN),
        ] {
            if value.len() > max {
                let len = value.len();
                return Err(SpecProblem::TooLong { field, len, max });
            }
        }
        // Never part of a host name or IP literal; JSON would double them.
        if host.contains(['"', '\\']) {
            return Err(SpecProblem::HostQuote);
        }
        for (field, value, max) in [
            (SpecField::AuthUser, &spec.auth_user, MAX_NAME_LEN),
            (SpecField::AuthPass, &spec.auth_pass, MAX_SECRET_LEN),
        ] {
            let len = value.as_deref().map_or(0, str::len);
            if len > max {
                return Err(SpecProblem::TooLong { field, len, max });
            }
        }
    }
    if spec.quorum == 0 {
        return Err(SpecProblem::Zero(SpecField::Quorum));
    }
    if spec.name.is_empty()
        || spec
            .name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(SpecProblem::BadName);
    }
    for (field, zero) in [
        (SpecField::DownAfter, spec.down_after_ms == 0),
        (SpecField::FailoverTimeout, spec.failover_timeout_ms == 0),
        (SpecField::ParallelSyncs, spec.parallel_syncs == 0),
    ] {
        if zero {
            return Err(SpecProblem::Zero(field));
        }
    }
    Ok(())
}
