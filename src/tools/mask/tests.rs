//! The masking tables: secret shapes that must be hidden, ordinary text
//! that must come back byte for byte, and the properties both rely on.
//! (Long on purpose: the tables are the specification of masking; split,
//! they would be read in pieces.)

use super::{mask_json, mask_secrets};

/// (input, expected output, the secret that must not survive).
const SECRETS: &[(&str, &str, &str)] = &[
    // Found by the security review.
    (
        "mysql -uroot -pS3cr3t db",
        "mysql -uroot -p*** db",
        "S3cr3t",
    ),
    (
        "sshpass -p S3cr3t ssh host",
        "sshpass -p *** ssh host",
        "S3cr3t",
    ),
    (
        "redis-cli -a S3cr3t ping",
        "redis-cli -a *** ping",
        "S3cr3t",
    ),
    (
        "curl -u user:S3cr3t https://h/",
        "curl -u user:*** https://h/",
        "S3cr3t",
    ),
    ("app --db-pass=S3cr3t -v", "app --db-pass=*** -v", "S3cr3t"),
    (
        "keytool -list -storepass S3cr3t",
        "keytool -list -storepass ***",
        "S3cr3t",
    ),
    (
        r#"{"password" : "S3cr3t"}"#,
        r#"{"password" : "***"}"#,
        "S3cr3t",
    ),
    (
        "//svc:password=S3cr3t@nas/share",
        "//svc:***@nas/share",
        "S3cr3t",
    ),
    // URL userinfo, several schemes.
    ("https://u:S3cr3t@h/x", "https://u:***@h/x", "S3cr3t"),
    (
        "ftp://anon:S3cr3t@files.example.com/pub",
        "ftp://anon:***@files.example.com/pub",
        "S3cr3t",
    ),
    (
        "redis://:S3cr3t@cache:6379/0",
        "redis://:***@cache:6379/0",
        "S3cr3t",
    ),
    (
        "amqp://app:S3cr3t@mq:5672/vhost",
        "amqp://app:***@mq:5672/vhost",
        "S3cr3t",
    ),
    (
        "psql postgresql://u:S3cr3t@h/db",
        "psql postgresql://u:***@h/db",
        "S3cr3t",
    ),
    (
        "mongodb+srv://u:S3cr3t@cluster0.example.net/db?retryWrites=true",
        "mongodb+srv://u:***@cluster0.example.net/db?retryWrites=true",
        "S3cr3t",
    ),
    ("https://u:p@ss@h/", "https://u:***@h/", "p@ss"),
    // A URL whose password is itself token-shaped (a deploy token in a
    // clone URL): masked once, as the password.
    (
        "git clone https://oauth2:glpat-abcdefghijklmnopqrstuvwx@gitlab.com/g/r.git",
        "git clone https://oauth2:***@gitlab.com/g/r.git",
        "glpat-abcdefghijklmnopqrstuvwx",
    ),
    (
        "https://x-access-token:ghs_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r",
        "https://x-access-token:***@github.com/o/r",
        "abcdefghijklmnopqrstuvwxyz0123456789",
    ),
    (
        "postgres://admin:AKIAIOSFODNN7EXAMPLE@db:5432/x",
        "postgres://admin:***@db:5432/x",
        "AKIAIOSFODNN7EXAMPLE",
    ),
    (
        "https://u:eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.S3cr3tSignature@h/x",
        "https://u:***@h/x",
        "S3cr3tSignature",
    ),
    (
        "https://u:a/glpat-abcdefghijklmnopqrstuvwx@h/x",
        "https://u:***@h/x",
        "glpat-abcdefghijklmnopqrstuvwx",
    ),
    ("https://u:S3/cr3t@h/x", "https://u:***@h/x", "cr3t"),
    (
        "git clone https://user:S3cr3t@github.com/org/repo.git",
        "git clone https://user:***@github.com/org/repo.git",
        "S3cr3t",
    ),
    // Go's database/sql DSN (no scheme, no `//`).
    (
        "user:S3cr3t@tcp(db:3306)/x",
        "user:***@tcp(db:3306)/x",
        "S3cr3t",
    ),
    (
        "dsn=root:S3cr3t@unix(/run/mysqld/mysqld.sock)/app?parseTime=true",
        "dsn=root:***@unix(/run/mysqld/mysqld.sock)/app?parseTime=true",
        "S3cr3t",
    ),
    (
        r#"{"dsn":"app:p@ss:w0rd@tcp6([::1]:3306)/db"}"#,
        r#"{"dsn":"app:***@tcp6([::1]:3306)/db"}"#,
        "w0rd",
    ),
    (
        "DATABASE_URL=postgres://app:S3cr3t@db:5432/x",
        "DATABASE_URL=postgres://app:***@db:5432/x",
        "S3cr3t",
    ),
    // HTTP auth headers.
    (
        "Authorization: Bearer S3cr3t",
        "Authorization: Bearer ***",
        "S3cr3t",
    ),
    (
        "Authorization: Basic dXNlcjpTM2NyM3Q=",
        "Authorization: Basic ***",
        "dXNlcjpTM2NyM3Q=",
    ),
    (
        "curl -H 'Authorization: Bearer S3cr3t' https://api",
        "curl -H 'Authorization: Bearer ***' https://api",
        "S3cr3t",
    ),
    (
        r#"curl -H "Authorization: Bearer abc.S3cr3t" url"#,
        r#"curl -H "Authorization: Bearer ***" url"#,
        "S3cr3t",
    ),
    (
        "Proxy-Authorization:Basic S3cr3t",
        "Proxy-Authorization:Basic ***",
        "S3cr3t",
    ),
    ("X-Api-Key: S3cr3t", "X-Api-Key: ***", "S3cr3t"),
    (
        "curl --oauth2-bearer S3cr3t url",
        "curl --oauth2-bearer *** url",
        "S3cr3t",
    ),
    // AWS.
    (
        "key AKIAIOSFODNN7EXAMPLE used",
        "key AKIA*** used",
        "IOSFODNN7EXAMPLE",
    ),
    ("ASIAY34FZKBOKMUTVV7A", "ASIA***", "Y34FZKBOKMUTVV7A"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = ***",
        "wJalrXUtnFEMI",
    ),
    (
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG",
        "AWS_SECRET_ACCESS_KEY=***",
        "wJalrXUtnFEMI",
    ),
    // PEM private keys, the body masked over its lines.
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nS3cr3tBody\n-----END RSA PRIVATE KEY-----\nnext",
        "-----BEGIN RSA PRIVATE KEY-----\n***\n-----END RSA PRIVATE KEY-----\nnext",
        "S3cr3tBody",
    ),
    (
        "a -----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjE S3cr3t -----END OPENSSH PRIVATE KEY----- z",
        "a -----BEGIN OPENSSH PRIVATE KEY----- *** -----END OPENSSH PRIVATE KEY----- z",
        "S3cr3t",
    ),
    (
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG S3cr3t (cut here)",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n***",
        "S3cr3t",
    ),
    // Keys in any case, with `=` or `:`.
    ("TOKEN=S3cr3t ./run", "TOKEN=*** ./run", "S3cr3t"),
    ("Secret: S3cr3t", "Secret: ***", "S3cr3t"),
    ("apikey=S3cr3t", "apikey=***", "S3cr3t"),
    ("--api-key S3cr3t", "--api-key ***", "S3cr3t"),
    ("API_KEY=S3cr3t", "API_KEY=***", "S3cr3t"),
    (
        "https://h/x?token=S3cr3t&page=2",
        "https://h/x?token=***&page=2",
        "S3cr3t",
    ),
    (
        "https://h/b?sv=2022&sig=S3cr3t%3D",
        "https://h/b?sv=2022&sig=***",
        "S3cr3t",
    ),
    (
        "-Dspring.datasource.password=S3cr3t",
        "-Dspring.datasource.password=***",
        "S3cr3t",
    ),
    // JSON: quotes kept, spaces around the colon, escapes inside.
    (
        r#"{"token":"S3cr3t","user":"bob"}"#,
        r#"{"token":"***","user":"bob"}"#,
        "S3cr3t",
    ),
    (r#"{"apiKey" :"S3cr3t"}"#, r#"{"apiKey" :"***"}"#, "S3cr3t"),
    (
        r#"{"a": 1, "secret" : 42}"#,
        r#"{"a": 1, "secret" : ***}"#,
        "42",
    ),
    (
        r#"{"password":"a\"S3cr3t"}"#,
        r#"{"password":"***"}"#,
        "S3cr3t",
    ),
    (
        r#"{"auth": {"password": "S3cr3t"}}"#,
        r#"{"auth": {"password": "***"}}"#,
        "S3cr3t",
    ),
    // YAML and ini.
    ("password: S3cr3t", "password: ***", "S3cr3t"),
    ("  db_password : S3cr3t", "  db_password : ***", "S3cr3t"),
    ("client_secret: 'S3cr3t'", "client_secret: '***'", "S3cr3t"),
    (
        "private_key = \"S3cr3t\"",
        "private_key = \"***\"",
        "S3cr3t",
    ),
    (
        "private_key = \"-----BEGIN PRIVATE KEY-----\nMIIEv S3cr3t\n-----END PRIVATE KEY-----\n\" # pem",
        "private_key = \"***\" # pem",
        "S3cr3t",
    ),
    // Environment.
    (
        "DB_PASSWORD=S3cr3t ./run",
        "DB_PASSWORD=*** ./run",
        "S3cr3t",
    ),
    (
        "MYSQL_PWD=S3cr3t mysql -u root",
        "MYSQL_PWD=*** mysql -u root",
        "S3cr3t",
    ),
    (
        "PGPASSWORD=S3cr3t psql -h db",
        "PGPASSWORD=*** psql -h db",
        "S3cr3t",
    ),
    (
        "docker run -e MYSQL_ROOT_PASSWORD=S3cr3t mysql:8",
        "docker run -e MYSQL_ROOT_PASSWORD=*** mysql:8",
        "S3cr3t",
    ),
    (
        "export PASSWORD='a S3cr3t b'",
        "export PASSWORD='***'",
        "S3cr3t",
    ),
    // Programs and their flags.
    (
        "mysql --password=S3cr3t db",
        "mysql --password=*** db",
        "S3cr3t",
    ),
    (
        "/usr/bin/mysqldump -u app -pS3cr3t db",
        "/usr/bin/mysqldump -u app -p*** db",
        "S3cr3t",
    ),
    (
        "mysql -u root -p'S3 cr3t' db",
        "mysql -u root -p'***' db",
        "S3 cr3t",
    ),
    (
        "sshpass -pS3cr3t ssh -p 2222 host",
        "sshpass -p*** ssh -p 2222 host",
        "S3cr3t",
    ),
    (
        "redis-cli -h 10.0.0.1 -p 6379 -a S3cr3t",
        "redis-cli -h 10.0.0.1 -p 6379 -a ***",
        "S3cr3t",
    ),
    (
        "redis-cli --pass S3cr3t ping",
        "redis-cli --pass *** ping",
        "S3cr3t",
    ),
    (
        "curl --user user:S3cr3t url",
        "curl --user user:*** url",
        "S3cr3t",
    ),
    ("curl -uuser:S3cr3t url", "curl -uuser:*** url", "S3cr3t"),
    (
        "curl -k -u 'user:S3cr3t' url",
        "curl -k -u 'user:***' url",
        "S3cr3t",
    ),
    (
        "wget --password=S3cr3t url",
        "wget --password=*** url",
        "S3cr3t",
    ),
    (
        "wget --http-password S3cr3t url",
        "wget --http-password *** url",
        "S3cr3t",
    ),
    ("app --dbpass S3cr3t", "app --dbpass ***", "S3cr3t"),
    ("app --pass S3cr3t", "app --pass ***", "S3cr3t"),
    (
        "keytool -importkeystore -srcstorepass S3cr3t",
        "keytool -importkeystore -srcstorepass ***",
        "S3cr3t",
    ),
    (
        "keytool -deststorepass S3cr3t -keypass K3yp4ss",
        "keytool -deststorepass *** -keypass ***",
        "S3cr3t",
    ),
    (
        "openssl rsa -in k.pem -passin pass:S3cr3t",
        "openssl rsa -in k.pem -passin pass:***",
        "S3cr3t",
    ),
    (
        "openssl pkcs12 -export -passout pass:S3cr3t",
        "openssl pkcs12 -export -passout pass:***",
        "S3cr3t",
    ),
    (
        "openssl enc -aes256 -k S3cr3t -in f",
        "openssl enc -aes256 -k *** -in f",
        "S3cr3t",
    ),
    (
        "htpasswd -b /etc/nginx/.htpasswd alice S3cr3t",
        "htpasswd -b /etc/nginx/.htpasswd alice ***",
        "S3cr3t",
    ),
    (
        "htpasswd -nbB alice S3cr3t",
        "htpasswd -nbB alice ***",
        "S3cr3t",
    ),
    (
        "app --set-password S3cr3t",
        "app --set-password ***",
        "S3cr3t",
    ),
    (
        "keytool -storepasswd -new S3cr3t -storepass 0ldS3cr3t",
        "keytool -storepasswd -new *** -storepass ***",
        "S3cr3t",
    ),
    (
        "ldapsearch -x -D cn=admin,dc=x -w S3cr3t -b dc=x",
        "ldapsearch -x -D cn=admin,dc=x -w *** -b dc=x",
        "S3cr3t",
    ),
    (
        "docker login -u bob -p S3cr3t registry.example",
        "docker login -u bob -p *** registry.example",
        "S3cr3t",
    ),
    (
        "mongosh -u admin -p S3cr3t",
        "mongosh -u admin -p ***",
        "S3cr3t",
    ),
    (
        "sqlcmd -S db -U sa -P S3cr3t",
        "sqlcmd -S db -U sa -P ***",
        "S3cr3t",
    ),
    (
        "ipmitool -I lanplus -H bmc -U admin -P S3cr3t power status",
        "ipmitool -I lanplus -H bmc -U admin -P *** power status",
        "S3cr3t",
    ),
    (
        "smbclient //nas/share -U alice%S3cr3t",
        "smbclient //nas/share -U alice%***",
        "S3cr3t",
    ),
    (
        "sqlplus -s scott/S3cr3t@orcl",
        "sqlplus -s scott/***@orcl",
        "S3cr3t",
    ),
    ("7z x -pS3cr3t a.7z", "7z x -p*** a.7z", "S3cr3t"),
    (
        "ssh-keygen -t ed25519 -N S3cr3t -f k",
        "ssh-keygen -t ed25519 -N *** -f k",
        "S3cr3t",
    ),
    (
        "useradd -m -p '$6$salt$S3cr3t' bob",
        "useradd -m -p '***' bob",
        "S3cr3t",
    ),
    (
        "nmcli dev wifi connect home password S3cr3t",
        "nmcli dev wifi connect home password ***",
        "S3cr3t",
    ),
    (
        "xfreerdp /u:admin /p:S3cr3t /v:host",
        "xfreerdp /u:admin /p:*** /v:host",
        "S3cr3t",
    ),
    (
        "sudo: alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/mysql -pS3cr3t",
        "sudo: alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/mysql -p***",
        "S3cr3t",
    ),
    (
        "bash -c \"sshpass -p S3cr3t scp f h:\"",
        "bash -c \"sshpass -p *** scp f h:\"",
        "S3cr3t",
    ),
    // Connection strings.
    (
        "Server=db;User Id=app;Password=S3cr3t;Encrypt=true",
        "Server=db;User Id=app;Password=***;Encrypt=true",
        "S3cr3t",
    ),
    (
        "psql \"host=db password=S3cr3t\"",
        "psql \"host=db password=***\"",
        "S3cr3t",
    ),
    // Mount options and sources.
    (
        "rw,relatime,username=svc,password=S3cr3t,domain=CORP",
        "rw,relatime,username=svc,password=***,domain=CORP",
        "S3cr3t",
    ),
    (
        "mount -t cifs -o username=u,password=S3cr3t,domain=d //nas/s /mnt",
        "mount -t cifs -o username=u,password=***,domain=d //nas/s /mnt",
        "S3cr3t",
    ),
    // Prefix-shaped tokens.
    (
        "git push https://ghp_S3cr3tAbCdEfGhIjKlMnOpQrStUvWxYz01@github.com/o/r",
        "git push https://ghp_***@github.com/o/r",
        "S3cr3tAbCd",
    ),
    (
        "GH=github_pat_11ABCDEFG0S3cr3tS3cr3tS3cr3t",
        "GH=github_pat_***",
        "S3cr3tS3cr3t",
    ),
    (
        "slack xoxb-123456789012-S3cr3tS3cr3t",
        "slack xoxb-***",
        "S3cr3tS3cr3t",
    ),
    ("glpat-S3cr3tS3cr3tS3cr3tXX", "glpat-***", "S3cr3tS3cr3t"),
    (
        "vault hvs.CAESIS3cr3tS3cr3tS3cr3t",
        "vault hvs.***",
        "S3cr3tS3cr3t",
    ),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.S3cr3tSignature end",
        "jwt *** end",
        "S3cr3tSignature",
    ),
    // Quoted values keep their quotes, even over words.
    (
        r#"--password="my S3cr3t pass" -v"#,
        r#"--password="***" -v"#,
        "S3cr3t",
    ),
    ("a\t--token\tS3cr3t\nb", "a\t--token\t***\nb", "S3cr3t"),
    ("--opt=passwd=S3cr3t", "--opt=passwd=***", "S3cr3t"),
    ("'--password=S3cr3t'", "'--password=***'", "S3cr3t"),
];

/// Ordinary text that must come back unchanged, line by line and whole.
const ORDINARY: &str = r#"/usr/sbin/sshd -D
nginx: worker process
nginx: master process /usr/sbin/nginx -g daemon on; master_process on;
java -Xmx2g -jar app.jar
python3 -m http.server 8000
postgres: checkpointer
postgres: walwriter
sshd: alice@pts/0
sshd: alice [priv]
mysql -u root
mysql -u root -p
mysql -u root -p mydb
redis-cli -h 10.0.0.1 -p 6379
redis-cli --askpass -h 10.0.0.1
tar -xzf a.tar.gz
grep -r keyword .
ssh -p 2222 host
rsync -a src/ dst/
curl -I https://example.com
curl -k https://example.com/health
curl -u alice https://example.com/
docker ps -a
docker run -p 8080:80 nginx
docker login --password-stdin -u bob registry.example
kubectl get pods -A
kubectl get secrets -n prod
systemctl status nginx
ls -la /etc
sort -k 2 -n data.txt
ssh-keygen -t ed25519 -C alice@example.com
awk -F: '{print $1}' /etc/passwd
cat /etc/passwd: No such file or directory
openssl s_client -connect example.com:443 -servername example.com
gpg --list-secret-keys alice
sqlplus / as sysdba
htpasswd -c /etc/nginx/.htpasswd alice
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev,size=1634464k,mode=755 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
server:/export /mnt nfs4 rw,vers=4.2,addr=10.0.0.2 0 0
//nas/share /mnt/share cifs rw,username=svc,domain=CORP 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw,lowerdir=/l,upperdir=/u,workdir=/w 0 0
[12345.678] EXT4-fs (sda1): mounted filesystem with ordered data mode. Quota mode: none.
[12346.001] Out of memory: Killed process 1234 (java) total-vm:4096kB, anon-rss:2048kB
[12347.002] TCP: request_sock_TCP: Possible SYN flooding on port 443. Sending cookies.
[12348.003] audit: type=1400 audit(1700000000.123:45): apparmor="DENIED" operation="open" profile="snap.x" name="/etc/ssl/private/key.pem" pid=1 comm="x"
[12349.004] usb 1-1: new high-speed USB device number 2 using xhci_hcd
pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=10.0.0.9 user=root
Accepted publickey for alice from 10.0.0.5 port 51234 ssh2: ED25519 SHA256:AbCdEf0123456789
sudo: alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx
the token bucket refills every second
password reset link sent to the user
Secret rotation is scheduled for Monday
Enter passphrase for key '/root/.ssh/id_rsa':
monkey=1 author: x keyboard=us hotkey=F5
PWD=/root OLDPWD=/tmp HOME=/root SSH_ASKPASS=/usr/bin/ksshaskpass
PrivateTmp=yes ProtectSystem=strict
{"name": "app", "private": true, "version": "1.0.0"}
{"user": "bob", "n": 1, "token_type": "Bearer"}
--password-file=/run/secrets/db --no-password --with-token
https://user@example.com/ ssh://git@github.com/org/repo.git git@github.com:org/repo.git
http://[::1]:8080/path?page=2&sort=asc#top http://[::1]:8080/p@x https://example.com:8443/a@b
-----BEGIN CERTIFICATE-----
MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa
-----END CERTIFICATE-----
AKIA is the prefix of an AWS key id; ghp_ of a GitHub token
top - 10:00:00 up 3 days, 2 users, load average: 0.50, 0.40, 0.30
eth0: flags=4163<UP,BROADCAST,RUNNING,MULTICAST> mtu 1500
naïve ünïcode: ok 日本"#;

#[test]
fn every_secret_shape_is_masked() {
    assert!(SECRETS.len() >= 60, "{} shapes", SECRETS.len());
    for (input, want, secret) in SECRETS {
        let got = mask_secrets(input);
        assert_eq!(got, *want, "input: {input}");
        assert!(!got.contains(secret), "{secret:?} survives in {got:?}");
    }
}

#[test]
fn ordinary_text_comes_back_unchanged() {
    let lines: Vec<&str> = ORDINARY.lines().collect();
    assert!(lines.len() >= 40, "{} lines", lines.len());
    for line in &lines {
        assert_eq!(mask_secrets(line), *line);
    }
    assert_eq!(mask_secrets(ORDINARY), ORDINARY, "as one text");
    for edge in [
        "",
        " ",
        "\n\n",
        "=",
        ":",
        "--password=",
        "\"",
        "//",
        "-----BEGIN ",
    ] {
        assert_eq!(mask_secrets(edge), edge);
    }
}

#[test]
fn masking_is_idempotent() {
    for (input, _, _) in SECRETS {
        let once = mask_secrets(input);
        assert_eq!(mask_secrets(&once), once, "input: {input}");
    }
}

#[test]
fn masked_json_strings_stay_valid_json() {
    let mut v = serde_json::json!({
        "mounts": [
            {"device": "//svc:password=S3cr3t@nas/share", "options": "rw,password=S3cr3t,uid=0"},
            {"device": "/dev/sda1", "options": "rw,relatime"},
        ],
        "lines": ["a \"password\": \"S3cr3t\" b", "-----BEGIN PRIVATE KEY-----\nS3cr3t"],
        "n": 3,
    });
    mask_json(&mut v);
    let text = v.to_string();
    assert!(!text.contains("S3cr3t"), "{text}");
    let back: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
    assert_eq!(back["mounts"][0]["device"], "//svc:***@nas/share");
    assert_eq!(back["mounts"][0]["options"], "rw,password=***,uid=0");
    assert_eq!(back["mounts"][1]["options"], "rw,relatime");
    assert_eq!(back["lines"][0], "a \"password\": \"***\" b");
    assert_eq!(back["n"], 3);
}

#[test]
fn odd_input_never_panics_and_a_flagged_secret_never_survives() {
    let pieces = [
        "=",
        ":",
        "\"",
        "'",
        "é",
        "://",
        "//",
        "@",
        "--token",
        " ",
        "\t",
        "{",
        ",",
        "?",
        "&",
        "password",
        "x",
        "-",
        "\n",
        "Bearer",
        "key",
        "日本",
        "\\",
        "mysql",
        "-p",
        "curl",
        "-u",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END ",
        "eyJ",
        "AKIA",
        "AKIAIOSFODNN7EXAMPLE",
        "glpat-abcdefghijklmnopqrstuvwx",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.S3cr3tSignature",
        "https://u:",
        "@h/",
        ";",
        "|",
        "%",
        "/",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..(seed % 12) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
        }
        let masked = mask_secrets(&format!("{text} --password=hunter2 {text}"));
        assert!(!masked.contains("hunter2"), "{text:?} -> {masked:?}");
        assert_eq!(mask_secrets(&masked), masked, "idempotent on {text:?}");
    }
}
