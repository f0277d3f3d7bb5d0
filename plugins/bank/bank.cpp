// bank: an account whose balance is kept as a journal of events. Deposit
// and Withdraw become Deposited and Withdrawn events; each is applied, and
// answered, once it is durable. A withdrawal beyond the balance is refused
// and stores nothing. Every kinds.bank.account.persistence.snapshot_every
// events the node asks for a snapshot, the balance.
//
// As a grain (bank.account/<id>) or a named actor, it gets its balance back
// after a passivation, a restart of the actor or of the node.
#include <troupe/troupe.hpp>
#include "bank_generated.h"  // flatc --cpp --gen-name-strings bank.fbs

struct Account : troupe::PersistentActor {
  int64_t balance = 0;

  // The past, before started(): the snapshot, then the events after it.
  void recover(troupe::Context& ctx, const troupe::Recovered&) override {
    if (auto s = ctx.message<bank::AccountState>()) balance = s->balance();
    else if (auto d = ctx.message<bank::Deposited>()) balance += d->amount();
    else if (auto w = ctx.message<bank::Withdrawn>()) balance -= w->amount();
  }

  void snapshot(troupe::Context& ctx) override {
    ctx.save_snapshot<bank::AccountState>([&](auto& b) { return bank::CreateAccountState(b, balance); });
  }

  void receive(troupe::Context& ctx) override {
    if (auto d = ctx.message<bank::Deposit>()) {
      const int64_t amount = d->amount();
      if (amount <= 0) return refuse(ctx, "a deposit must be positive");
      ctx.persist<bank::Deposited>([&](auto& b) { return bank::CreateDeposited(b, amount); },
                                   [this, amount](troupe::Context& c, const troupe::Persisted& p) {
                                     if (!p.ok()) return refuse(c, p.detail);
                                     balance += amount;
                                     answer(c);
                                   });
    } else if (auto w = ctx.message<bank::Withdraw>()) {
      const int64_t amount = w->amount();
      if (amount <= 0) return refuse(ctx, "a withdrawal must be positive");
      if (amount > balance) return refuse(ctx, "insufficient funds: the balance is " + std::to_string(balance));
      ctx.persist<bank::Withdrawn>([&](auto& b) { return bank::CreateWithdrawn(b, amount); },
                                   [this, amount](troupe::Context& c, const troupe::Persisted& p) {
                                     if (!p.ok()) return refuse(c, p.detail);
                                     balance -= amount;
                                     answer(c);
                                   });
    } else if (ctx.message<bank::GetBalance>()) {
      answer(ctx);
    }
  }

 private:
  void answer(troupe::Context& ctx) {
    const uint64_t seq = ctx.last_seq();
    ctx.respond<bank::Balance>([&](auto& b) { return bank::CreateBalance(b, balance, seq); });
  }
  static void refuse(troupe::Context& ctx, const std::string& why) {
    ctx.respond<bank::Refused>([&](auto& b) { return bank::CreateRefusedDirect(b, why.c_str()); });
  }
};

TROUPE_PLUGIN(bank, "1.0.0") {
  plugin.grain<Account>("bank.account");
  plugin.persistent<Account>("bank.account");
  plugin.schema(bank_bfbs);
}
