#pragma once
// The protocol's timing and sizes. lan() is HashiCorp memberlist's LAN
// profile; wan() its WAN one. Every field may be set.
#include <cstddef>
#include <cstdint>

#include "cluster/member.hpp"

namespace troupe::cluster {

struct swim_options {
  millis probe_interval{1000};  // one member probed per interval
  millis probe_timeout{500};    // the direct probe's wait, before indirect ones
  unsigned indirect_checks = 3;  // members asked to probe when the direct probe fails
  // Suspicion lasts between suspicion_mult * log10(n) * probe_interval and
  // suspicion_max_mult times that, shorter with each independent confirmation.
  unsigned suspicion_mult = 4;
  unsigned suspicion_max_mult = 6;
  millis gossip_interval{200};
  unsigned gossip_nodes = 3;
  // News is sent retransmit_mult * ceil(log10(n + 1)) times.
  unsigned retransmit_mult = 4;
  millis push_pull_interval{30000};  // full-state exchange with one member
  // Lifeguard: the local health score's ceiling. A node that misses acks and
  // nacks itself probes more slowly, up to (awareness_max + 1) times.
  unsigned awareness_max = 8;
  // Until it has joined, a node asks its seeds for the cluster's state this often.
  millis join_retry{1000};
  // Dead members are still gossiped to for this long (so that one that was
  // only cut off learns it and refutes), and remembered this long before
  // they are forgotten.
  millis gossip_to_the_dead{30000};
  millis dead_retention{300000};
  // Dead members and seeds are asked for a full-state exchange this often,
  // so that the halves of a long partition find each other again. Nothing
  // is sent while every member is alive and every seed in view.
  millis reconnect_interval{5000};
  std::size_t max_packet = 1400;  // bytes of one datagram

  static swim_options lan() { return {}; }
  static swim_options wan() {
    swim_options o;
    o.probe_interval = millis(5000);
    o.probe_timeout = millis(3000);
    o.suspicion_mult = 6;
    o.gossip_interval = millis(500);
    o.gossip_nodes = 4;
    o.push_pull_interval = millis(60000);
    o.gossip_to_the_dead = millis(60000);
    o.reconnect_interval = millis(30000);
    return o;
  }
};

}  // namespace troupe::cluster
