# Preload lab, host b (10.99.0.2): unmodified clients from Debian's packages against host a,
# first under sdp_run (SDP), then plainly (TCP, through the servers' `both` rule), for results
# and the SDP/TCP ratio. Results in $LAB_OUT/*.out, rc files per step.
set -u
BIN=${LAB_BIN:?}
RUN="$BIN/sdp_run -v"
A=10.99.0.1
lab_wait servers.up 180

step() {  # NAME COMMAND...: runs it bounded, records output and status
  local name=$1; shift
  timeout 300 "$@" >"$LAB_OUT/$name.out" 2>"$LAB_OUT/$name.log"
  echo $? >"$LAB_OUT/$name.rc"
}

step redis-set $RUN redis-cli -h $A -p 6400 set greeting "hello over sdp"
step redis-get $RUN redis-cli -h $A -p 6400 get greeting
step redis-bench-sdp $RUN redis-benchmark -h $A -p 6400 -n 5000 -c 10 -t set,get -q
step redis-bench-tcp redis-benchmark -h $A -p 6400 -n 5000 -c 10 -t set,get -q
step curl-big $RUN curl -sS -o /tmp/big.bin http://$A:8080/big.bin
sha256sum </tmp/big.bin | cut -d' ' -f1 >"$LAB_OUT/big.got.sha256"
step curl-index $RUN curl -sS http://$A:8080/index.html
step wrk-sdp $RUN wrk -t2 -c8 -d5s http://$A:8080/index.html
step wrk-tcp wrk -t2 -c8 -d5s http://$A:8080/index.html
step iperf3-sdp $RUN iperf3 -c $A -p 5201 -t 3 -J
sleep 1
step iperf3-tcp iperf3 -c $A -p 5201 -t 3 -J
step pingpong-sdp $RUN "$BIN/preload-check" pingpong $A 7400 300
step pingpong-tcp "$BIN/preload-check" pingpong $A 7400 300
lab_signal clients.done
