# bench/msa_user.sh - sourced by the benchmark scripts: the account
# msaproxy's workers run as in a benchmark.  msaproxy refuses to serve
# clients as root, so as root MSA_USER is "msaproxy" (or what the caller
# set), created if missing as scripts/install-deps.sh does; unprivileged,
# empty (msaproxy then stays as it is).
if [ "$(id -u)" = 0 ]; then
	MSA_USER=${MSA_USER:-msaproxy}
	getent passwd "$MSA_USER" >/dev/null ||
	    useradd --system --no-create-home --shell /usr/sbin/nologin "$MSA_USER"
else
	MSA_USER=${MSA_USER:-}
fi
