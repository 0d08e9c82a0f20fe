//! The crate's only `unsafe` code: tiny wrappers over libc calls that std
//! does not expose. Everything else in the crate is safe Rust.

use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The effective user id of this process.
#[allow(unsafe_code)]
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments, touches no memory of ours and
    // cannot fail.
    unsafe { libc::geteuid() }
}

/// Looks up a system account by name; returns its uid and primary gid, or
/// `None` if there is no such account.
#[allow(unsafe_code)]
pub(crate) fn lookup_user(name: &str) -> io::Result<Option<(u32, u32)>> {
    let c_name = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // getpwnam_r (unlike getpwnam) is thread-safe: the strings it returns
    // live in our buffer, which we grow while it reports ERANGE.
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: `passwd` is a plain C struct of integers and pointers, for
        // which all-zero bytes (null pointers) is a valid value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the duration of the call: the
        // NUL-terminated name, the struct, the buffer with its true length
        // and the result slot. We read `pwd` only if `result` points to it.
        let rc = unsafe { libc::getpwnam_r(c_name.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some((pwd.pw_uid, pwd.pw_gid))),
            libc::ERANGE if buf.len() < (1 << 20) => buf.resize(buf.len() * 2, 0),
            err => return Err(io::Error::from_raw_os_error(err)),
        }
    }
}

/// Sends `signal` to the single process `pid`.
///
/// Callers must know the pid still belongs to the process they mean: for our
/// own children that holds until they are reaped (a zombie keeps its pid).
#[allow(unsafe_code)]
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // Refuse 0 and anything that would become negative: kill(0) signals our
    // own process group and kill(-1) every process we may signal.
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "invalid pid"))?;
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is positive,
    // so it targets exactly one process.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes the child spawned by `cmd` receive `signal` when the thread that
/// spawns it exits (Linux `PR_SET_PDEATHSIG`).
///
/// The kernel ties the death signal to the spawning *thread*, so callers
/// must spawn from a thread that lives as long as the process (see
/// `process::spawn_supervised`).
#[allow(unsafe_code)]
pub(crate) fn set_parent_death_signal(cmd: &mut Command, signal: libc::c_int) {
    let parent = std::process::id();
    let signal = signal as libc::c_ulong;
    // SAFETY: the hook runs in the forked child before exec, where only
    // async-signal-safe operations are allowed: prctl(2) and getppid(2) are
    // plain syscalls, and building an io::Error from an errno does not
    // allocate. std runs pre_exec hooks after its setgid/setuid, which
    // matters because a credential change clears the death signal again.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // If we were orphaned between fork and prctl, the signal will
            // never come: fail the spawn instead of leaving a stray server.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exists_and_nonsense_does_not() {
        assert_eq!(lookup_user("root").unwrap(), Some((0, 0)));
        assert_eq!(lookup_user("no-such-user-citygauge").unwrap(), None);
        assert!(lookup_user("nul\0byte").is_err());
    }

    #[test]
    fn refuses_group_and_broadcast_pids() {
        assert!(send_signal(0, 0).is_err());
        assert!(send_signal(u32::MAX, 0).is_err());
        // Signal 0 only checks that we may signal ourselves.
        send_signal(std::process::id(), 0).unwrap();
    }
}
