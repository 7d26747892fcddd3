# Preload lab, host a (10.99.0.1): unmodified servers from Debian's packages under sdp_run
# (redis-server, nginx with a master and two forked workers, iperf3) and preload-check's echo
# server (for round-trip times), each also reachable over plain TCP (rule `both`). Logs of every decision in $LAB_OUT/*.log.
set -u
BIN=${LAB_BIN:?}
RUN="$BIN/sdp_run -v"

mkdir -p /tmp/www /tmp/nginx
head -c 4194304 /dev/urandom >/tmp/www/big.bin
sha256sum </tmp/www/big.bin | cut -d' ' -f1 >"$LAB_OUT/big.sha256"
echo "hello from nginx over SDP" >/tmp/www/index.html
cat >/tmp/nginx/nginx.conf <<'CONF'
daemon off;
master_process on;
worker_processes 2;
error_log /tmp/nginx/error.log;
pid /tmp/nginx/nginx.pid;
events { worker_connections 256; use epoll; }
http {
  access_log off;
  client_body_temp_path /tmp/nginx/body;
  proxy_temp_path /tmp/nginx/proxy;
  fastcgi_temp_path /tmp/nginx/fastcgi;
  uwsgi_temp_path /tmp/nginx/uwsgi;
  scgi_temp_path /tmp/nginx/scgi;
  server { listen 8080; root /tmp/www; }
}
CONF

$RUN redis-server --port 6400 --bind 0.0.0.0 --protected-mode no --save '' --appendonly no \
  >"$LAB_OUT/redis.out" 2>"$LAB_OUT/redis.log" &
redis=$!
$RUN nginx -c /tmp/nginx/nginx.conf >"$LAB_OUT/nginx.out" 2>"$LAB_OUT/nginx.log" &
nginx=$!
( for i in 1 2; do $RUN iperf3 -s -p 5201 -1; done ) >"$LAB_OUT/iperf3-server.out" \
  2>"$LAB_OUT/iperf3-server.log" &
iperf=$!
$RUN "$BIN/preload-check" server 7400 >"$LAB_OUT/echo.out" 2>"$LAB_OUT/echo.log" &
echo_srv=$!
for p in 6400 8080 5201 7400; do lab_wait_cm_listen "$p" 60 || echo "no SDP listener on $p" >&2; done
lab_signal servers.up
lab_wait clients.done 900
kill "$redis" "$nginx" "$iperf" "$echo_srv" 2>/dev/null
pkill -f "nginx -c /tmp/nginx" 2>/dev/null
wait 2>/dev/null
cp /tmp/nginx/error.log "$LAB_OUT/nginx-error.log" 2>/dev/null
true
