#include "comm/mpi_communicator.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <deque>
#include <iostream>
#include <mutex>
#include <sstream>

#include "comm/mpi_tasks.h"

namespace cst::comm {

using detail::make_mpi_work;
using detail::nbytes;
using detail::run_deferred;
using detail::run_task;
using detail::worker_loop;

namespace {

// MPI counts are int: larger messages go in chunks of this many elements.
constexpr int64_t kMaxChunk = int64_t{1} << 30;

// The MPI type a reduction runs on (bf16 / f16 are reduced through float32).
MPI_Datatype reduce_type(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    case at::kBool: return MPI_C_BOOL;
    default: return MPI_DATATYPE_NULL;
  }
}

bool via_float(at::ScalarType st) { return st == at::kBFloat16 || st == at::kHalf; }

bool movable(at::ScalarType st) {  // byte-wise broadcast / all_gather / send_recv
  return reduce_type(st) != MPI_DATATYPE_NULL || via_float(st);
}

MPI_Op mpi_op(ReduceOp op, at::ScalarType st) {
  if (st == at::kBool) return op == ReduceOp::kMin ? MPI_LAND : MPI_LOR;
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

std::string op_name(const char* verb, ReduceOp op) { return std::string(verb) + "(" + to_string(op) + ")"; }

}  // namespace

namespace {

std::atomic<bool> g_warned_no_thread{false};  // the one-time fallback warning (process-wide)

}  // namespace

// ---- construction -----------------------------------------------------------------------------

namespace {

// Throws cst::Error "MPI <op> of <bytes> bytes failed on rank R of W (host H): <MPI message>".
[[noreturn]] void fail(const MpiCommunicator::Ctx& ctx, int code, const char* expr, const char* file, int line,
                       const std::string& op, int64_t bytes) {
  char msg[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(code, msg, &len) != MPI_SUCCESS) std::snprintf(msg, sizeof(msg), "code %d", code);
  std::ostringstream os;
  os << "MPI " << op << " of " << bytes << " bytes failed on rank " << ctx.rank << " of " << ctx.size << " (host "
     << ctx.host << ", pid " << getpid() << "): " << msg;
  ::cst::detail::throw_error(file, line, expr, os.str());
}

}  // namespace

#define CST_MPI_OP(ctx, expr, op, bytes)                                                  \
  do {                                                                                    \
    int cst_rc_ = (expr);                                                                 \
    if (cst_rc_ != MPI_SUCCESS) fail(ctx, cst_rc_, #expr, __FILE__, __LINE__, op, bytes); \
  } while (0)

namespace {
MPI_Comm dup_world(const MpiEnvironment& env) {
  MpiCommunicator::Ctx ctx;
  ctx.host = env.host(), ctx.rank = env.rank(), ctx.size = env.size();
  MPI_Comm c = MPI_COMM_NULL;
  CST_MPI_OP(ctx, MPI_Comm_dup(MPI_COMM_WORLD, &c), "comm_dup", 0);
  return c;
}
}  // namespace

MpiCommunicator::MpiCommunicator(MpiEnvironment& env, Options opts) : MpiCommunicator(env, opts, dup_world(env)) {}

MpiCommunicator::MpiCommunicator(MpiEnvironment& env, Options opts, MPI_Comm comm)
    : env_(env), opts_(opts), queue_(std::make_shared<Queue>()), stuck_(std::make_shared<bool>(false)) {
  ctx_.host = env.host();
  ctx_.rank = env.rank();
  ctx_.size = env.size();
  ctx_.comm = comm;
  CST_MPI_OP(ctx_, MPI_Comm_set_errhandler(ctx_.comm, MPI_ERRORS_RETURN), "comm_set_errhandler", 0);
  CST_MPI_OP(ctx_, MPI_Comm_rank(ctx_.comm, &ctx_.rank), "comm_rank", 0);
  CST_MPI_OP(ctx_, MPI_Comm_size(ctx_.comm, &ctx_.size), "comm_size", 0);
  rank_ = ctx_.rank;
  size_ = ctx_.size;
  threaded_ = opts_.comm_thread && env.thread_level() >= MPI_THREAD_MULTIPLE;
  if (opts_.comm_thread && !threaded_ && rank_ == 0 && !g_warned_no_thread.exchange(true))
    std::cerr << "[cst] warning: MPI does not provide MPI_THREAD_MULTIPLE; all_reduce_async runs "
                 "when it is waited for (no overlap of gradient all-reduce with backward)\n";
  if (threaded_) worker_ = std::thread(worker_loop, queue_);
}

MpiCommunicator::~MpiCommunicator() {
  if (!threaded_ && !*stuck_) {
    try {  // deferred all-reduces still run, so that ranks stay matched
      run_deferred(*queue_, nullptr);
    } catch (...) {
    }
  }
  {
    std::lock_guard<std::mutex> lk(queue_->mu);
    queue_->stop = true;
    if (*stuck_) queue_->tasks.clear();  // peers are gone or hung: do not start more
  }
  queue_->cv.notify_all();
  if (worker_.joinable()) {
    if (*stuck_)
      worker_.detach();  // may stay blocked in MPI; it touches only its own shared state
    else
      worker_.join();
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!*stuck_ && !finalized && ctx_.comm != MPI_COMM_NULL) MPI_Comm_free(&ctx_.comm);
}

void MpiCommunicator::check_cpu(const at::Tensor& t, const char* op) const {
  CST_CHECK(t.defined(), "MPI " << op << " on rank " << rank_ << ": undefined tensor");
  CST_CHECK(t.device().is_cpu(), "MPI " << op << " on rank " << rank_ << ": MpiCommunicator needs CPU tensors, got "
                                        << detail::describe(t) << " (use the nccl backend on CUDA)");
  CST_CHECK(movable(t.scalar_type()), "MPI " << op << " on rank " << rank_ << ": unsupported dtype in "
                                             << detail::describe(t)
                                             << " (supported: float32, float64, bfloat16, float16, "
                                                "int64, int32, uint8, bool)");
}

std::shared_ptr<MpiCommunicator::TaskState> MpiCommunicator::submit(std::string op, int64_t bytes,
                                                                    std::function<void()> fn, bool deferrable) {
  CST_CHECK(!*stuck_, "MPI " << op << " on rank " << rank_
                             << ": the communicator is unusable after an earlier collective timed out");
  auto st = std::make_shared<TaskState>();
  st->op = std::move(op);
  st->bytes = bytes;
  if (!threaded_ && !deferrable) {
    run_deferred(*queue_, nullptr);  // the deferred all-reduces issued before it, first
    run_task(*st, fn);
    return st;
  }
  {
    std::lock_guard<std::mutex> lk(queue_->mu);
    queue_->tasks.emplace_back(st, std::move(fn));
  }
  if (threaded_) queue_->cv.notify_one();
  return st;
}

std::unique_ptr<Work> MpiCommunicator::submit_async(std::string op, int64_t bytes, std::function<void()> fn) {
  auto st = submit(std::move(op), bytes, std::move(fn), /*deferrable=*/true);
  return make_mpi_work(st, stuck_, rank_, ctx_.host, threaded_ ? nullptr : queue_);
}

void MpiCommunicator::run_blocking(std::string op, int64_t bytes, std::function<void()> fn) {
  auto st = submit(std::move(op), bytes, std::move(fn));
  make_mpi_work(st, stuck_, rank_, ctx_.host)->wait(opts_.timeout_s);
}

// ---- collectives ------------------------------------------------------------------------------

std::unique_ptr<Work> MpiCommunicator::all_reduce_async(at::Tensor t, ReduceOp op) {
  std::string name = op_name("all_reduce", op);
  check_cpu(t, name.c_str());
  CST_CHECK(t.scalar_type() != at::kBool || op != ReduceOp::kAvg,
            "MPI " << name << " on rank " << rank_ << ": kAvg is not defined for " << detail::describe(t));
  CST_CHECK(op != ReduceOp::kAvg || at::isFloatingType(t.scalar_type()),
            "MPI " << name << " on rank " << rank_ << ": kAvg needs a floating dtype, got " << detail::describe(t));
  const int64_t bytes = nbytes(t);
  const int sleep_us = threaded_ ? opts_.progress_sleep_us : 0;
  auto fn = [ctx = ctx_, t, op, name, bytes, sleep_us]() mutable {
    at::Tensor buf = t;
    if (via_float(t.scalar_type()))
      buf = t.to(at::kFloat);
    else if (!t.is_contiguous())
      buf = t.contiguous();
    const MPI_Datatype type = reduce_type(buf.scalar_type());
    const MPI_Op mop = mpi_op(op, buf.scalar_type());
    char* p = static_cast<char*>(buf.data_ptr());
    const int64_t esize = static_cast<int64_t>(buf.element_size());
    for (int64_t off = 0; off < buf.numel(); off += kMaxChunk) {
      const int n = static_cast<int>(std::min(kMaxChunk, buf.numel() - off));
      if (sleep_us <= 0) {
        CST_MPI_OP(ctx, MPI_Allreduce(MPI_IN_PLACE, p + off * esize, n, type, mop, ctx.comm), name, bytes);
        continue;
      }
      MPI_Request req = MPI_REQUEST_NULL;
      CST_MPI_OP(ctx, MPI_Iallreduce(MPI_IN_PLACE, p + off * esize, n, type, mop, ctx.comm, &req), name, bytes);
      for (int flag = 0;;) {
        CST_MPI_OP(ctx, MPI_Test(&req, &flag, MPI_STATUS_IGNORE), name, bytes);
        if (flag) break;
        std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
      }
    }
    if (op == ReduceOp::kAvg) buf.div_(ctx.size);
    if (!buf.is_same(t)) t.copy_(buf);
  };
  return submit_async(name, bytes, std::move(fn));
}

void MpiCommunicator::all_reduce(at::Tensor& t, ReduceOp op) { all_reduce_async(t, op)->wait(opts_.timeout_s); }

void MpiCommunicator::broadcast(at::Tensor& t, int root) {
  check_cpu(t, "broadcast");
  CST_CHECK(root >= 0 && root < size_,
            "MPI broadcast on rank " << rank_ << ": root " << root << " is not a rank of " << size_);
  const int64_t bytes = nbytes(t);
  at::Tensor target = t;
  run_blocking("broadcast", bytes, [ctx = ctx_, target, root, bytes]() mutable {
    at::Tensor buf = target.is_contiguous() ? target : target.contiguous();
    char* p = static_cast<char*>(buf.data_ptr());
    for (int64_t off = 0; off < bytes; off += kMaxChunk) {
      const int n = static_cast<int>(std::min(kMaxChunk, bytes - off));
      CST_MPI_OP(ctx, MPI_Bcast(p + off, n, MPI_BYTE, root, ctx.comm), "broadcast", bytes);
    }
    if (!buf.is_same(target)) target.copy_(buf);
  });
}

void MpiCommunicator::all_gather(const at::Tensor& in, at::Tensor& out) {
  all_gather_async(in, out)->wait(opts_.timeout_s);
}

std::unique_ptr<Work> MpiCommunicator::all_gather_async(const at::Tensor& in, at::Tensor out) {
  check_cpu(in, "all_gather");
  check_cpu(out, "all_gather");
  CST_CHECK(out.is_contiguous() && out.scalar_type() == in.scalar_type() && out.dim() == in.dim() + 1 &&
                out.size(0) == size_ && out.sizes().slice(1) == in.sizes(),
            "MPI all_gather on rank " << rank_ << ": out must be contiguous [" << size_ << ", " << in.sizes() << "] "
                                      << in.scalar_type() << ", got " << detail::describe(out));
  const int64_t bytes = nbytes(in);
  CST_CHECK(bytes <= INT_MAX,
            "MPI all_gather on rank " << rank_ << ": " << bytes << " bytes per rank exceed MPI's int count");
  at::Tensor src = in.contiguous(), dst = out;
  return submit_async("all_gather", bytes, [ctx = ctx_, src, dst, bytes]() {
    CST_MPI_OP(ctx,
               MPI_Allgather(src.data_ptr(), static_cast<int>(bytes), MPI_BYTE, dst.data_ptr(), static_cast<int>(bytes),
                             MPI_BYTE, ctx.comm),
               "all_gather", bytes);
  });
}

void MpiCommunicator::reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op) {
  reduce_scatter_async(in, out, op)->wait(opts_.timeout_s);
}

std::unique_ptr<Work> MpiCommunicator::reduce_scatter_async(const at::Tensor& in, at::Tensor out, ReduceOp op) {
  const std::string name = op_name("reduce_scatter", op);
  check_cpu(in, name.c_str());
  check_cpu(out, name.c_str());
  CST_CHECK(in.scalar_type() == out.scalar_type() && in.dim() == out.dim() + 1 && in.size(0) == size_ &&
                in.sizes().slice(1) == out.sizes(),
            "MPI " << name << " on rank " << rank_ << ": in must be [" << size_ << ", " << out.sizes() << "] "
                   << out.scalar_type() << ", got " << detail::describe(in));
  CST_CHECK(op != ReduceOp::kAvg || at::isFloatingType(in.scalar_type()),
            "MPI " << name << " on rank " << rank_ << ": kAvg needs a floating dtype, got " << detail::describe(in));
  CST_CHECK(out.numel() <= INT_MAX, "MPI " << name << " on rank " << rank_ << ": " << out.numel()
                                           << " elements per rank exceed MPI's int count");
  const int64_t bytes = nbytes(in);
  at::Tensor src = in, dst = out;
  return submit_async(name, bytes, [ctx = ctx_, src, dst, op, name, bytes]() mutable {
    const bool via = via_float(src.scalar_type());
    at::Tensor s = via ? src.to(at::kFloat).contiguous() : src.contiguous();
    at::Tensor r = (via || !dst.is_contiguous()) ? at::empty(dst.sizes(), s.options()) : dst;
    CST_MPI_OP(ctx,
               MPI_Reduce_scatter_block(s.data_ptr(), r.data_ptr(), static_cast<int>(r.numel()),
                                        reduce_type(s.scalar_type()), mpi_op(op, s.scalar_type()), ctx.comm),
               name, bytes);
    if (op == ReduceOp::kAvg) r.div_(ctx.size);
    if (!r.is_same(dst)) dst.copy_(r);
  });
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  CST_CHECK(color >= 0, "MPI split on rank " << rank_ << ": color " << color << " must be >= 0");
  auto made = std::make_shared<MPI_Comm>(MPI_COMM_NULL);  // written by the task, possibly late
  run_blocking("split", 0, [ctx = ctx_, color, key, made]() {
    CST_MPI_OP(ctx, MPI_Comm_split(ctx.comm, color, key, made.get()), "split", 0);
  });
  return std::unique_ptr<Communicator>(new MpiCommunicator(env_, opts_, *made));
}

void MpiCommunicator::send_recv(const at::Tensor& send, int dst, at::Tensor& recv, int src) {
  send_recv_async(send, dst, recv, src)->wait(opts_.timeout_s);
}

std::unique_ptr<Work> MpiCommunicator::send_recv_async(const at::Tensor& send, int dst, at::Tensor recv, int src) {
  CST_CHECK(dst >= -1 && dst < size_ && src >= -1 && src < size_, "MPI send_recv on rank "
                                                                      << rank_ << ": dst " << dst << " / src " << src
                                                                      << " out of [-1, " << size_ << ")");
  if (dst >= 0) check_cpu(send, "send_recv");
  if (src >= 0) {
    check_cpu(recv, "send_recv");
    CST_CHECK(recv.is_contiguous(),
              "MPI send_recv on rank " << rank_ << ": recv must be contiguous, got " << detail::describe(recv));
  }
  const int64_t sbytes = dst >= 0 ? nbytes(send) : 0, rbytes = src >= 0 ? nbytes(recv) : 0;
  CST_CHECK(sbytes <= INT_MAX && rbytes <= INT_MAX,
            "MPI send_recv on rank " << rank_ << ": message exceeds MPI's int count");
  at::Tensor s = dst >= 0 ? send.contiguous() : at::Tensor(), r = src >= 0 ? recv : at::Tensor();
  std::ostringstream name;
  name << "send_recv(to " << dst << ", from " << src << ")";
  return submit_async(name.str(), sbytes + rbytes, [ctx = ctx_, s, r, dst, src, sbytes, rbytes, n = name.str()]() {
    static char dummy = 0;
    void* sp = s.defined() ? s.data_ptr() : &dummy;
    void* rp = r.defined() ? r.data_ptr() : &dummy;
    CST_MPI_OP(ctx,
               MPI_Sendrecv(sp, static_cast<int>(sbytes), MPI_BYTE, dst < 0 ? MPI_PROC_NULL : dst, 17, rp,
                            static_cast<int>(rbytes), MPI_BYTE, src < 0 ? MPI_PROC_NULL : src, 17, ctx.comm,
                            MPI_STATUS_IGNORE),
               n, sbytes + rbytes);
  });
}

void MpiCommunicator::barrier() {
  run_blocking("barrier", 0, [ctx = ctx_]() { CST_MPI_OP(ctx, MPI_Barrier(ctx.comm), "barrier", 0); });
}

}  // namespace cst::comm
