//! age encryption of artifacts: the stage after compression on the way to
//! storage ([`Sealer`]), and before decompression on the way back
//! ([`Opener`]). Encrypting needs only public keys; what is stored is a
//! standard age file, so `age -d -i key.txt FILE | zstd -dc` reads it by
//! hand.

use std::{
    fs::File,
    io::{self, BufReader, Read, Write},
    os::unix::fs::FileTypeExt,
    path::Path,
    str::FromStr,
    time::Duration,
};

use secrecy::ExposeSecret;

use crate::{config::EncryptionSettings, restore::error::RestoreError, storage::Encryption};

/// The scrypt work factor of passphrase-encrypted artifacts, and the most
/// a restore accepts: N = 2^15 costs 32 MiB and about 0.1 s here. age's
/// own default (about a second, 2^18 = 256 MiB) would dwarf the memory of
/// a backup, and a file from storage asking for more is refused, not
/// obeyed (a hostile header could ask for gigabytes).
const SCRYPT_LOG_N: u8 = 15;

/// How new artifacts are encrypted: built once per backup from
/// `[encryption]`.
#[derive(Clone)]
pub struct Sealer {
    recipients: Vec<age::x25519::Recipient>,
    passphrase: Option<age::secrecy::SecretString>,
}

impl Sealer {
    /// The sealer `[encryption]` asks for, or none when it is off.
    ///
    /// # Errors
    ///
    /// When a recipient does not parse (the config load checked them).
    pub fn from_settings(settings: &EncryptionSettings) -> io::Result<Option<Self>> {
        if !settings.enabled() {
            return Ok(None);
        }
        let recipients = settings
            .recipients
            .iter()
            .map(|r| {
                age::x25519::Recipient::from_str(r)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad age recipient"))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let passphrase = settings
            .passphrase
            .as_ref()
            .map(|p| age::secrecy::SecretString::from(p.expose_secret().to_owned()));
        Ok(Some(Self {
            recipients,
            passphrase,
        }))
    }

    /// What the manifest records: the public keys, never a secret.
    pub fn manifest_entry(&self) -> Encryption {
        Encryption {
            format: Encryption::AGE.into(),
            recipients: self.recipients.iter().map(ToString::to_string).collect(),
            passphrase: self.passphrase.is_some(),
        }
    }

    /// Starts encrypting into `output` (writes the age header). A fresh
    /// file key per artifact.
    ///
    /// # Errors
    ///
    /// When `output` fails.
    pub fn seal<W: Write>(&self, output: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor = match &self.passphrase {
            Some(p) => {
                let mut recipient = age::scrypt::Recipient::new(p.clone());
                recipient.set_work_factor(SCRYPT_LOG_N);
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            }
            None => age::Encryptor::with_recipients(
                self.recipients.iter().map(|r| r as &dyn age::Recipient),
            ),
        }
        .map_err(|e| io::Error::other(e.to_string()))?;
        encryptor.wrap_output(output)
    }
}

/// The identities a restore or verification decrypts an artifact with.
pub struct Opener {
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// Where they came from, for messages.
    from: String,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opener({})", self.from)
    }
}

impl Opener {
    /// The identities `[encryption]` gives (`identity_file`, the
    /// passphrase), or none when neither is configured. Reads the file.
    ///
    /// # Errors
    ///
    /// [`RestoreError::Identity`] when the file cannot be read or holds no
    /// identity.
    pub fn load(settings: &EncryptionSettings) -> Result<Option<Self>, RestoreError> {
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        let mut from = Vec::new();
        if let Some(file) = &settings.identity_file {
            identities.extend(read_identity_within(file, PIPE_WAIT)?);
            from.push(format!("identity file {}", file.display()));
        }
        if let Some(p) = &settings.passphrase {
            let mut identity = age::scrypt::Identity::new(age::secrecy::SecretString::from(
                p.expose_secret().to_owned(),
            ));
            identity.set_max_work_factor(SCRYPT_LOG_N);
            identities.push(Box::new(identity));
            from.push("encryption.passphrase".into());
        }
        if identities.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            identities,
            from: from.join(" and "),
        }))
    }

    /// A reader of the plaintext of the age file `input`. Every chunk is
    /// authenticated: a truncated or altered file is an error, never
    /// plausible bytes.
    ///
    /// # Errors
    ///
    /// [`RestoreError::Identity`] when no identity opens it, else what is
    /// wrong with the file.
    pub fn open<R: Read + Send + 'static>(
        &self,
        key: &str,
        input: R,
    ) -> Result<Box<dyn Read + Send>, RestoreError> {
        let reader = BufReader::with_capacity(64 << 10, input);
        let decryptor = age::Decryptor::new_buffered(reader).map_err(|e| self.refused(key, &e))?;
        let plain = decryptor
            .decrypt(self.identities.iter().map(|i| &**i as &dyn age::Identity))
            .map_err(|e| self.refused(key, &e))?;
        Ok(Box::new(plain))
    }

    /// Checks that these identities open the age file that starts with
    /// `head` (its first bytes, header included), without reading on.
    ///
    /// # Errors
    ///
    /// As [`Opener::open`].
    pub fn check_head(&self, key: &str, head: &[u8]) -> Result<(), RestoreError> {
        let decryptor = age::Decryptor::new_buffered(head).map_err(|e| self.refused(key, &e))?;
        decryptor
            .decrypt(self.identities.iter().map(|i| &**i as &dyn age::Identity))
            .map(|_| ())
            .map_err(|e| self.refused(key, &e))
    }

    fn refused(&self, key: &str, e: &age::DecryptError) -> RestoreError {
        let why = match e {
            age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => format!(
                "no identity from {} opens it (it is encrypted to other keys, or the \
                 passphrase is wrong)",
                self.from
            ),
            age::DecryptError::InvalidHeader
            | age::DecryptError::InvalidMac
            | age::DecryptError::UnknownFormat => {
                "it is not a whole age file (its header is damaged)".into()
            }
            age::DecryptError::ExcessiveWork { .. } => {
                "its passphrase work factor is beyond what this machine will try".into()
            }
            other => other.to_string(),
        };
        RestoreError::Identity(format!("artifact {key} cannot be decrypted: {why}"))
    }
}

/// What can be checked of an encrypted artifact without its identity: that
/// it starts with a whole age header, of the kind its manifest says
/// (passphrase or keys).
///
/// # Errors
///
/// What is wrong, for a `Damaged` error.
pub fn check_header(head: &[u8], encryption: &Encryption) -> Result<(), String> {
    let decryptor = age::Decryptor::new_buffered(head)
        .map_err(|_| "it does not start with a whole age header".to_string())?;
    if decryptor.is_scrypt() != encryption.passphrase {
        return Err(format!(
            "its age header is for {}, its manifest says {}",
            if decryptor.is_scrypt() {
                "a passphrase"
            } else {
                "keys"
            },
            if encryption.passphrase {
                "a passphrase"
            } else {
                "keys"
            }
        ));
    }
    Ok(())
}

/// How long an identity file that is a pipe may wait for its writer.
const PIPE_WAIT: Duration = Duration::from_secs(30);

/// Identities of an age identity file. Its content is never echoed: a
/// parse error names only the file. A pipe (`<(pass show key)`, or a named
/// pipe written a moment later) is waited on for `wait` at most: opening a
/// named pipe nothing writes to would block for ever.
fn read_identity_within(
    file: &Path,
    wait: Duration,
) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, RestoreError> {
    let bad =
        |why: String| RestoreError::Identity(format!("identity file {}: {why}", file.display()));
    if file.is_dir() {
        return Err(bad("is a directory".into()));
    }
    let opened = if std::fs::metadata(file).is_ok_and(|m| m.file_type().is_fifo()) {
        // The open runs on a thread of its own, left blocked if no writer
        // ever comes (the command then fails; a writer would free it).
        let (tx, rx) = std::sync::mpsc::channel();
        let path = file.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(File::open(path));
        });
        rx.recv_timeout(wait).map_err(|_| {
            bad(format!(
                "nothing wrote to this named pipe within {} s",
                wait.as_secs()
            ))
        })?
    } else {
        File::open(file)
    }
    .map_err(|e| bad(e.to_string()))?;
    let parsed = age::IdentityFile::from_buffer(BufReader::new(opened))
        .map_err(|_| bad("not an age identity file (as `age-keygen -o FILE` writes)".into()))?;
    let identities = parsed
        .into_identities()
        .map_err(|_| bad("holds an identity this tool cannot use".into()))?;
    if identities.is_empty() {
        return Err(bad("holds no identity".into()));
    }
    Ok(identities)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncryptionSettings;

    fn settings_with(recipient: &str) -> EncryptionSettings {
        EncryptionSettings {
            recipients: vec![recipient.to_string()],
            ..Default::default()
        }
    }

    #[test]
    fn sealed_bytes_open_with_the_identity_and_nothing_else() {
        let key = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let sealer = Sealer::from_settings(&settings_with(&key.to_public().to_string()))
            .unwrap()
            .unwrap();
        let mut w = sealer.seal(Vec::new()).unwrap();
        w.write_all(&vec![7u8; 300_000]).unwrap();
        let sealed = w.finish().unwrap();
        assert_eq!(
            sealer.manifest_entry().recipients,
            [key.to_public().to_string()]
        );

        let dir = tempfile::tempdir().unwrap();
        let write_key = |name: &str, id: &age::x25519::Identity| {
            let path = dir.path().join(name);
            std::fs::write(&path, id.to_string().expose_secret()).unwrap();
            path
        };
        let mut settings = EncryptionSettings {
            identity_file: Some(write_key("right.txt", &key)),
            ..Default::default()
        };
        let opener = Opener::load(&settings).unwrap().unwrap();
        opener.check_head("k", &sealed[..1000]).unwrap();
        let mut plain = Vec::new();
        opener
            .open("k", io::Cursor::new(sealed.clone()))
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, vec![7u8; 300_000]);

        // Truncated: an error, not a short plaintext.
        let mut out = Vec::new();
        let cut = sealed[..sealed.len() - 100].to_vec();
        assert!(
            opener
                .open("k", io::Cursor::new(cut))
                .unwrap()
                .read_to_end(&mut out)
                .is_err()
        );

        settings.identity_file = Some(write_key("wrong.txt", &other));
        let opener = Opener::load(&settings).unwrap().unwrap();
        let err = opener.open("k", io::Cursor::new(sealed)).err().unwrap();
        assert!(
            err.to_string().contains("no identity from identity file"),
            "{err}"
        );

        assert!(
            Opener::load(&EncryptionSettings::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_passphrase_opens_what_it_sealed_and_a_costlier_file_is_refused() {
        let pass = "correct horse battery staple";
        let settings = EncryptionSettings {
            passphrase: Some(pass.to_string().into()),
            ..Default::default()
        };
        let sealer = Sealer::from_settings(&settings).unwrap().unwrap();
        let mut w = sealer.seal(Vec::new()).unwrap();
        w.write_all(b"dump").unwrap();
        let sealed = w.finish().unwrap();
        let enc = sealer.manifest_entry();
        assert!(enc.passphrase && enc.recipients.is_empty());
        let opener = Opener::load(&settings).unwrap().unwrap();
        let mut plain = Vec::new();
        opener
            .open("k", io::Cursor::new(sealed))
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"dump");

        // A file (from storage, so anyone's) asking for twice the work.
        let mut costly = age::scrypt::Recipient::new(pass.to_string().into());
        costly.set_work_factor(SCRYPT_LOG_N + 1);
        let mut w =
            age::Encryptor::with_recipients(std::iter::once(&costly as &dyn age::Recipient))
                .unwrap()
                .wrap_output(Vec::new())
                .unwrap();
        w.write_all(b"dump").unwrap();
        let err = opener
            .open("k", io::Cursor::new(w.finish().unwrap()))
            .err()
            .unwrap();
        assert!(err.to_string().contains("work factor"), "{err}");
    }

    #[test]
    fn a_garbage_identity_file_is_named_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.txt");
        std::fs::write(&path, "hunter2-not-a-key\n").unwrap();
        let settings = EncryptionSettings {
            identity_file: Some(path),
            ..Default::default()
        };
        let err = Opener::load(&settings).err().unwrap().to_string();
        assert!(err.contains("id.txt") && !err.contains("hunter2"), "{err}");
    }

    fn fifo(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("identity.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        path
    }

    #[test]
    fn a_named_pipe_nothing_writes_to_is_refused_not_waited_on_forever() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = fifo(dir.path());
        let (tx, rx) = std::sync::mpsc::channel();
        let reading = path.clone();
        std::thread::spawn(move || {
            let _ =
                tx.send(read_identity_within(&reading, Duration::from_secs(1)).map(|i| i.len()));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("an answer, not a hang");
        let err = got.expect_err("refused").to_string();
        assert!(err.contains("nothing wrote to this named pipe"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_named_pipe_with_a_writer_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = fifo(dir.path());
        let key = age::x25519::Identity::generate();
        let text = key.to_string().expose_secret().to_string();
        let writing = path.clone();
        // The writer comes a moment later, as `mkfifo p; pass show key > p &` does.
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            std::fs::write(&writing, format!("{text}\n")).expect("write the pipe");
        });
        let identities = read_identity_within(&path, Duration::from_secs(10)).expect("read");
        assert_eq!(identities.len(), 1);
        writer.join().expect("writer");
    }
}
