// Compiled only when CST_WITH_NCCL (see comm/CMakeLists.txt).
#include "comm/nccl_communicator.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

namespace cst::comm {

using detail::nbytes;

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte:
    case at::kBool: return ncclUint8;
    default: return ncclNumTypes;  // unsupported
  }
}

ncclRedOp_t nccl_op(ReduceOp op, at::ScalarType st) {
  if (st == at::kBool) return op == ReduceOp::kMin ? ncclMin : ncclMax;
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

std::string host_name() {
  char h[256] = {0};
  gethostname(h, sizeof(h) - 1);
  return h;
}

}  // namespace

// Throws cst::Error "NCCL <op> of <bytes> bytes failed on rank R (host H): <message>".
#define CST_CHECK_NCCL(expr, op, bytes)                                                                                \
  do {                                                                                                                 \
    ncclResult_t cst_nrc_ = (expr);                                                                                    \
    if (cst_nrc_ != ncclSuccess) {                                                                                     \
      std::ostringstream cst_os_;                                                                                      \
      cst_os_ << "NCCL " << (op) << " of " << (bytes) << " bytes failed on rank " << rank_ << " (host " << env_.host() \
              << ", pid " << getpid() << "): " << ncclGetErrorString(cst_nrc_);                                        \
      const char* cst_last_ = ncclGetLastError(nullptr);                                                               \
      if (cst_last_ != nullptr && *cst_last_ != 0) cst_os_ << " (" << cst_last_ << ")";                                \
      ::cst::detail::throw_error(__FILE__, __LINE__, #expr, cst_os_.str());                                            \
    }                                                                                                                  \
  } while (0)

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;
  MPI_Comm mpi = MPI_COMM_NULL;  // the same ranks over MPI (owned): for split()
  c10::cuda::CUDAStream stream;
  explicit Impl(c10::cuda::CUDAStream s) : stream(s) {}
};

namespace {

// Waits on the host for `done` (an event on the side stream) with a timeout, then orders the
// caller's current stream after it.
class NcclWork : public Work {
 public:
  NcclWork(ncclComm_t comm, std::shared_ptr<c10::cuda::CUDAEvent> start, std::shared_ptr<c10::cuda::CUDAEvent> end,
           at::Tensor keep, std::string op, int64_t bytes, int rank, int device)
      : comm_(comm),
        start_(std::move(start)),
        end_(std::move(end)),
        keep_(std::move(keep)),
        op_(std::move(op)),
        bytes_(bytes),
        rank_(rank),
        device_(device) {}

  bool done() override { return end_->query(); }

  void wait(double timeout_s) override {
    auto t0 = Clock::now();
    while (!end_->query()) {
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      CST_CHECK(async == ncclSuccess || async == ncclInProgress,
                "NCCL " << op_ << " of " << bytes_ << " bytes failed on rank " << rank_ << " (host " << host_name()
                        << "): " << ncclGetErrorString(async));
      if (timeout_s > 0 && std::chrono::duration<double>(Clock::now() - t0).count() > timeout_s) {
        std::ostringstream os;
        os << "NCCL " << op_ << " of " << bytes_ << " bytes did not complete within " << timeout_s << " s on rank "
           << rank_ << " (host " << host_name() << ", pid " << getpid()
           << "): a peer is slow, hung or dead; abort the job";
        throw CommTimeout(os.str());
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    c10::cuda::CUDAGuard g(static_cast<c10::DeviceIndex>(device_));
    end_->block(c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_)));
  }

  double elapsed_seconds() const override {
    if (!end_->query()) return 0.0;
    return static_cast<double>(start_->elapsed_time(*end_)) / 1e3;
  }

 private:
  ncclComm_t comm_;
  std::shared_ptr<c10::cuda::CUDAEvent> start_, end_;
  at::Tensor keep_;
  std::string op_;
  int64_t bytes_;
  int rank_, device_;
};

}  // namespace

bool NcclCommunicator::cuda_available() { return c10::cuda::device_count() > 0; }

NcclCommunicator::NcclCommunicator(MpiEnvironment& env, int device, double timeout_s)
    : env_(env), rank_(env.rank()), size_(env.size()), timeout_s_(timeout_s) {
  CST_CHECK(cuda_available(),
            "NcclCommunicator on rank " << rank_ << " (host " << env.host() << "): no CUDA device is visible");
  device_ = device >= 0 ? device : static_cast<int>(c10::cuda::current_device());
  c10::cuda::CUDAGuard g(static_cast<c10::DeviceIndex>(device_));
  impl_ = std::make_unique<Impl>(
      c10::cuda::getStreamFromPool(/*isHighPriority=*/true, static_cast<c10::DeviceIndex>(device_)));
  CST_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &impl_->mpi));
  ncclUniqueId id;
  if (rank_ == 0) CST_CHECK_NCCL(ncclGetUniqueId(&id), "get_unique_id", sizeof(id));
  CST_CHECK_MPI(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, impl_->mpi));
  CST_CHECK_NCCL(ncclCommInitRank(&impl_->comm, size_, id, rank_), "comm_init_rank", sizeof(id));
}

NcclCommunicator::NcclCommunicator(MpiEnvironment& env, MPI_Comm mpi_comm, const NcclCommunicator& parent, int color,
                                   int key)
    : env_(env), device_(parent.device_), timeout_s_(parent.timeout_s_) {
  c10::cuda::CUDAGuard g(static_cast<c10::DeviceIndex>(device_));
  impl_ = std::make_unique<Impl>(
      c10::cuda::getStreamFromPool(/*isHighPriority=*/true, static_cast<c10::DeviceIndex>(device_)));
  impl_->mpi = mpi_comm;
  CST_CHECK_MPI(MPI_Comm_rank(mpi_comm, &rank_));
  CST_CHECK_MPI(MPI_Comm_size(mpi_comm, &size_));
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  CST_CHECK_NCCL(ncclCommSplit(parent.impl_->comm, color, key, &impl_->comm, &config), "comm_split", 0);
  int nccl_rank = -1;
  CST_CHECK_NCCL(ncclCommUserRank(impl_->comm, &nccl_rank), "comm_user_rank", 0);
  CST_CHECK(nccl_rank == rank_, "NCCL split on rank " << rank_ << ": NCCL ranks this process " << nccl_rank
                                                      << ", MPI_Comm_split " << rank_);
#else
  (void)color, (void)key;
  ncclUniqueId id;
  if (rank_ == 0) CST_CHECK_NCCL(ncclGetUniqueId(&id), "get_unique_id", sizeof(id));
  CST_CHECK_MPI(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, impl_->mpi));
  CST_CHECK_NCCL(ncclCommInitRank(&impl_->comm, size_, id, rank_), "comm_init_rank", sizeof(id));
#endif
}

NcclCommunicator::~NcclCommunicator() {
  // After a timeout the process aborts (MPI_Abort) instead of reaching here with a hung comm.
  if (impl_ && impl_->comm != nullptr) ncclCommDestroy(impl_->comm);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (impl_ && impl_->mpi != MPI_COMM_NULL && !finalized) MPI_Comm_free(&impl_->mpi);
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  CST_CHECK(color >= 0, "NCCL split on rank " << rank_ << ": color " << color << " must be >= 0");
  MPI_Comm sub = MPI_COMM_NULL;
  CST_CHECK_MPI(MPI_Comm_split(impl_->mpi, color, key, &sub));
  return std::unique_ptr<Communicator>(new NcclCommunicator(env_, sub, *this, color, key));
}

namespace {
struct Launch {
  std::shared_ptr<c10::cuda::CUDAEvent> start, end;
};
}  // namespace

// Orders the side stream after the current stream, runs `body` on the side stream between two
// timing events, and records `tensors` on the side stream for the caching allocator.
#define CST_NCCL_LAUNCH(launch, tensors, body)                                                                         \
  do {                                                                                                                 \
    c10::cuda::CUDAGuard cst_g_(static_cast<c10::DeviceIndex>(device_));                                               \
    auto cst_cur_ = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_));                           \
    c10::cuda::CUDAEvent cst_ready_;                                                                                   \
    cst_ready_.record(cst_cur_);                                                                                       \
    cst_ready_.block(impl_->stream);                                                                                   \
    (launch).start = std::make_shared<c10::cuda::CUDAEvent>(cudaEventDefault);                                         \
    (launch).end = std::make_shared<c10::cuda::CUDAEvent>(cudaEventDefault);                                           \
    (launch).start->record(impl_->stream);                                                                             \
    body;                                                                                                              \
    (launch).end->record(impl_->stream);                                                                               \
    for (const at::Tensor& cst_t_ : tensors)                                                                           \
      if (cst_t_.defined()) c10::cuda::CUDACachingAllocator::recordStream(cst_t_.storage().data_ptr(), impl_->stream); \
  } while (0)

namespace {
void check_cuda_tensor(const at::Tensor& t, int device, int rank, const char* op) {
  CST_CHECK(t.defined() && t.is_cuda() && t.get_device() == device,
            "NCCL " << op << " on rank " << rank << ": needs a CUDA tensor on device " << device << ", got "
                    << detail::describe(t));
  CST_CHECK(t.is_contiguous(),
            "NCCL " << op << " on rank " << rank << ": needs a contiguous tensor, got " << detail::describe(t));
  CST_CHECK(nccl_type(t.scalar_type()) != ncclNumTypes,
            "NCCL " << op << " on rank " << rank << ": unsupported dtype in " << detail::describe(t));
}
}  // namespace

std::unique_ptr<Work> NcclCommunicator::all_reduce_async(at::Tensor t, ReduceOp op) {
  std::string name = std::string("all_reduce(") + to_string(op) + ")";
  check_cuda_tensor(t, device_, rank_, name.c_str());
  CST_CHECK(op != ReduceOp::kAvg || at::isFloatingType(t.scalar_type()),
            "NCCL " << name << " on rank " << rank_ << ": kAvg needs a floating dtype, got " << detail::describe(t));
  const int64_t bytes = nbytes(t);
  Launch l;
  std::vector<at::Tensor> ts{t};
  CST_NCCL_LAUNCH(l, ts,
                  CST_CHECK_NCCL(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.scalar_type()),
                                               nccl_op(op, t.scalar_type()), impl_->comm, impl_->stream.stream()),
                                 name, bytes));
  return std::make_unique<NcclWork>(impl_->comm, l.start, l.end, t, name, bytes, rank_, device_);
}

void NcclCommunicator::all_reduce(at::Tensor& t, ReduceOp op) { all_reduce_async(t, op)->wait(timeout_s_); }

void NcclCommunicator::broadcast(at::Tensor& t, int root) {
  check_cuda_tensor(t, device_, rank_, "broadcast");
  CST_CHECK(root >= 0 && root < size_, "NCCL broadcast on rank " << rank_ << ": bad root " << root);
  const int64_t bytes = nbytes(t);
  Launch l;
  std::vector<at::Tensor> ts{t};
  CST_NCCL_LAUNCH(l, ts,
                  CST_CHECK_NCCL(ncclBroadcast(t.data_ptr(), t.data_ptr(), bytes, ncclUint8, root, impl_->comm,
                                               impl_->stream.stream()),
                                 "broadcast", bytes));
  NcclWork(impl_->comm, l.start, l.end, t, "broadcast", bytes, rank_, device_).wait(timeout_s_);
}

void NcclCommunicator::all_gather(const at::Tensor& in, at::Tensor& out) {
  all_gather_async(in, out)->wait(timeout_s_);
}

std::unique_ptr<Work> NcclCommunicator::all_gather_async(const at::Tensor& in, at::Tensor out) {
  check_cuda_tensor(in, device_, rank_, "all_gather");
  check_cuda_tensor(out, device_, rank_, "all_gather");
  CST_CHECK(out.scalar_type() == in.scalar_type() && out.dim() == in.dim() + 1 && out.size(0) == size_ &&
                out.sizes().slice(1) == in.sizes(),
            "NCCL all_gather on rank " << rank_ << ": out must be [" << size_ << ", " << in.sizes() << "], got "
                                       << detail::describe(out));
  const int64_t bytes = nbytes(in);
  Launch l;
  std::vector<at::Tensor> ts{in, out};
  CST_NCCL_LAUNCH(l, ts,
                  CST_CHECK_NCCL(ncclAllGather(in.data_ptr(), out.data_ptr(), bytes, ncclUint8, impl_->comm,
                                               impl_->stream.stream()),
                                 "all_gather", bytes));
  return std::make_unique<NcclWork>(impl_->comm, l.start, l.end, out, "all_gather", bytes, rank_, device_);
}

void NcclCommunicator::reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op) {
  reduce_scatter_async(in, out, op)->wait(timeout_s_);
}

std::unique_ptr<Work> NcclCommunicator::reduce_scatter_async(const at::Tensor& in, at::Tensor out, ReduceOp op) {
  const std::string name = std::string("reduce_scatter(") + to_string(op) + ")";
  check_cuda_tensor(in, device_, rank_, name.c_str());
  check_cuda_tensor(out, device_, rank_, name.c_str());
  CST_CHECK(out.scalar_type() == in.scalar_type() && in.dim() == out.dim() + 1 && in.size(0) == size_ &&
                in.sizes().slice(1) == out.sizes(),
            "NCCL " << name << " on rank " << rank_ << ": in must be [" << size_ << ", " << out.sizes() << "], got "
                    << detail::describe(in));
  CST_CHECK(op != ReduceOp::kAvg || at::isFloatingType(in.scalar_type()),
            "NCCL " << name << " on rank " << rank_ << ": kAvg needs a floating dtype, got " << detail::describe(in));
  const int64_t bytes = nbytes(in);
  Launch l;
  std::vector<at::Tensor> ts{in, out};
  CST_NCCL_LAUNCH(
      l, ts,
      CST_CHECK_NCCL(ncclReduceScatter(in.data_ptr(), out.data_ptr(), out.numel(), nccl_type(in.scalar_type()),
                                       nccl_op(op, in.scalar_type()), impl_->comm, impl_->stream.stream()),
                     name, bytes));
  return std::make_unique<NcclWork>(impl_->comm, l.start, l.end, out, name, bytes, rank_, device_);
}

void NcclCommunicator::send_recv(const at::Tensor& send, int dst, at::Tensor& recv, int src) {
  send_recv_async(send, dst, recv, src)->wait(timeout_s_);
}

std::unique_ptr<Work> NcclCommunicator::send_recv_async(const at::Tensor& send, int dst, at::Tensor recv, int src) {
  CST_CHECK(dst >= -1 && dst < size_ && src >= -1 && src < size_,
            "NCCL send_recv on rank " << rank_ << ": dst " << dst << " / src " << src << " out of range");
  if (dst >= 0) check_cuda_tensor(send, device_, rank_, "send_recv");
  if (src >= 0) check_cuda_tensor(recv, device_, rank_, "send_recv");
  const int64_t sbytes = dst >= 0 ? nbytes(send) : 0, rbytes = src >= 0 ? nbytes(recv) : 0;
  Launch l;
  std::vector<at::Tensor> ts{dst >= 0 ? send : at::Tensor(), src >= 0 ? recv : at::Tensor()};
  CST_NCCL_LAUNCH(l, ts, {
    CST_CHECK_NCCL(ncclGroupStart(), "send_recv", sbytes + rbytes);
    if (dst >= 0)
      CST_CHECK_NCCL(ncclSend(send.data_ptr(), sbytes, ncclUint8, dst, impl_->comm, impl_->stream.stream()),
                     "send_recv", sbytes);
    if (src >= 0)
      CST_CHECK_NCCL(ncclRecv(recv.data_ptr(), rbytes, ncclUint8, src, impl_->comm, impl_->stream.stream()),
                     "send_recv", rbytes);
    CST_CHECK_NCCL(ncclGroupEnd(), "send_recv", sbytes + rbytes);
  });
  return std::make_unique<NcclWork>(impl_->comm, l.start, l.end, recv, "send_recv", sbytes + rbytes, rank_, device_);
}

void NcclCommunicator::barrier() {
  at::Tensor t = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device_));
  all_reduce(t, ReduceOp::kSum);
  c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_)).synchronize();
}

}  // namespace cst::comm
