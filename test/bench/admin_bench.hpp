#pragma once
// The admin API's workloads (admin_bench.cpp), run against this build's
// troupe-node; they throw std::runtime_error when the setup fails.

double admin_send_rps();
double admin_healthz_p99_under_slowloris();
