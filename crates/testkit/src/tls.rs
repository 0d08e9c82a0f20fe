//! TLS for tests: a CA and a server certificate made at test time (rcgen),
//! a Mosquitto with a TLS listener, a PostgreSQL cluster switched to
//! `ssl = on`, and the real daemon with its output kept for inspection.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use citygauge_stack::throwaway_dir;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

use crate::{toolchain, Cluster};

/// A CA, a certificate it signed for `localhost` and 127.0.0.1, and an
/// unrelated CA (what a wrong `*_ca_file` points at), as PEM files.
#[derive(Debug)]
pub struct TestPki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub dir: tempfile::TempDir,
}

fn ca(name: &str) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok((params.self_signed(&key)?, key))
}

impl TestPki {
    pub fn generate() -> anyhow::Result<TestPki> {
        let dir = throwaway_dir("citygauge-test-pki-")?;
        // Brokers drop root for their own user: let them read the files.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let (ca_cert, ca_key) = ca("citygauge test CA")?;
        let (other, _) = ca("someone else's CA")?;
        let server_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let server = params.signed_by(&server_key, &ca_cert, &ca_key)?;
        let write = |name: &str, text: String| -> anyhow::Result<PathBuf> {
            let path = dir.path().join(name);
            fs::write(&path, text)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
            Ok(path)
        };
        Ok(TestPki {
            ca: write("ca.pem", ca_cert.pem())?,
            other_ca: write("other-ca.pem", other.pem())?,
            server_cert: write("server.pem", server.pem())?,
            server_key: write("server.key", server_key.serialize_pem())?,
            dir,
        })
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(port: u16, child: &mut Child, log: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if child.try_wait()?.is_some() || start.elapsed() > Duration::from_secs(15) {
            bail!("mosquitto did not listen on {port}: {}", fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A Mosquitto with a plain anonymous listener (for the test's publisher)
/// and a TLS listener that wants `user`/`password`.
#[derive(Debug)]
pub struct TlsBroker {
    pub plain_port: u16,
    pub tls_port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsBroker {
    pub fn start(pki: &TestPki, user: &str, password: &str) -> anyhow::Result<TlsBroker> {
        let mosquitto = toolchain()?.mosquitto().to_path_buf();
        let dir = throwaway_dir("citygauge-test-mqtts-")?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let passwords = dir.path().join("passwords");
        let passwd = mosquitto.with_file_name("mosquitto_passwd");
        let passwd = if passwd.exists() { passwd } else { PathBuf::from("mosquitto_passwd") };
        let status = Command::new(&passwd)
            .args(["-b", "-c"])
            .arg(&passwords)
            .args([user, password])
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", passwd.display()))?;
        if !status.success() {
            bail!("mosquitto_passwd failed: {status}");
        }
        fs::set_permissions(&passwords, fs::Permissions::from_mode(0o644))?;
        let (plain_port, tls_port) = (free_port()?, free_port()?);
        let log = dir.path().join("mosquitto.log");
        let conf = dir.path().join("mosquitto.conf");
        fs::write(
            &conf,
            format!(
                "per_listener_settings true\n\
                 listener {plain_port} 127.0.0.1\nallow_anonymous true\n\
                 listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n\
                 cafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
                 max_inflight_messages 65535\nmax_queued_messages 0\n\
                 log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nconnection_messages true\n",
                passwords = passwords.display(),
                ca = pki.ca.display(),
                cert = pki.server_cert.display(),
                key = pki.server_key.display(),
            ),
        )?;
        let mut child = Command::new(&mosquitto)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", mosquitto.display()))?;
        wait_listening(plain_port, &mut child, &log)?;
        wait_listening(tls_port, &mut child, &log)?;
        Ok(TlsBroker { plain_port, tls_port, child, _dir: dir })
    }

    pub fn tls_url(&self) -> String {
        format!("mqtts://localhost:{}", self.tls_port)
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Switches `cluster` to `ssl = on` with the PKI's server certificate and
/// adds `role` (a superuser with `password`) that may log in over TLS only,
/// with its password: a connection of `role` is proof of both.
pub async fn enable_postgres_tls(cluster: &Cluster, pki: &TestPki, role: &str, password: &str) -> anyhow::Result<()> {
    let data = cluster.postgres.data_dir();
    let owner = fs::metadata(data)?;
    let (cert, key) = (data.join("test-server.pem"), data.join("test-server.key"));
    fs::copy(&pki.server_cert, &cert)?;
    fs::copy(&pki.server_key, &key)?;
    for path in [&cert, &key] {
        // PostgreSQL refuses a key that others can read or it does not own.
        std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    let hba = data.join("pg_hba.conf");
    let rest = fs::read_to_string(&hba)?;
    fs::write(
        &hba,
        format!("hostnossl all {role} 127.0.0.1/32 reject\nhostssl all {role} 127.0.0.1/32 scram-sha-256\n{rest}"),
    )?;
    let admin = crate::db::connect(&cluster.postgres.connection_string("postgres")).await?;
    // One statement each: a multi-statement string is one transaction, and
    // ALTER SYSTEM refuses to run in one.
    for sql in [
        format!("CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'"),
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        "ALTER SYSTEM SET ssl = on".into(),
        "SELECT pg_reload_conf()".into(),
    ] {
        admin.batch_execute(&sql).await.with_context(|| sql.clone())?;
    }
    crate::eventually("PostgreSQL to take ssl = on", Duration::from_secs(10), || async {
        let client = crate::db::connect(&cluster.postgres.connection_string("postgres")).await?;
        let on: String = client.query_one("SHOW ssl", &[]).await?.get(0);
        Ok((on == "on").then_some(()))
    })
    .await
}

/// The real `citygauge <args>` with its stdout and stderr kept in a file.
#[derive(Debug)]
pub struct LoggedProcess {
    child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoggedProcess {
    pub fn start(binary: &Path, args: &[String], env: &[(&str, &str)]) -> anyhow::Result<LoggedProcess> {
        let dir = throwaway_dir("citygauge-test-log-")?;
        let log = dir.path().join("output.log");
        let out = fs::File::create(&log)?;
        let child = Command::new(binary)
            .args(args)
            .envs(env.iter().copied())
            .env("CITYGAUGE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(LoggedProcess { child, log, _dir: dir })
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status once it has ended, if it has.
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// SIGTERM and wait.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for LoggedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
