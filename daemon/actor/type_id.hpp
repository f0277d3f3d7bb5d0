#pragma once
// Message type ids are part of the plugin contract: the node uses the SDK's
// definition so that both sides always agree.
#include <troupe/type_id.hpp>
