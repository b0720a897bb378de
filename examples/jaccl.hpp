// jaccl.hpp: a small header-only C++17 wrapper over <jaccl.h>.
//
// jaccl::Comm owns a communicator (move-only; destroyed with the object),
// failures throw jaccl::Error carrying the result code and the library's
// message, and element types map to jaccl dtypes at compile time, so
// comm.allreduce(v) works for a std::vector<float> or any contiguous range.
#ifndef JACCL_HPP
#define JACCL_HPP

#include <jaccl.h>

#include <complex>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <iterator>
#include <utility>

namespace jaccl
{

class Error : public std::runtime_error
{
  public:
    Error(jaccl_result_t rc, const std::string &what)
        : std::runtime_error(what + ": " + jaccl_result_string(rc)), result(rc)
    {
    }
    jaccl_result_t result;
};

template <typename T> struct dtype_of;
#define JACCL_HPP_DTYPE(T, D)                                                                      \
    template <> struct dtype_of<T> {                                                               \
        static constexpr jaccl_dtype_t value = D;                                                  \
    }
JACCL_HPP_DTYPE(std::int8_t, JACCL_INT8);
JACCL_HPP_DTYPE(std::uint8_t, JACCL_UINT8);
JACCL_HPP_DTYPE(std::int16_t, JACCL_INT16);
JACCL_HPP_DTYPE(std::uint16_t, JACCL_UINT16);
JACCL_HPP_DTYPE(std::int32_t, JACCL_INT32);
JACCL_HPP_DTYPE(std::uint32_t, JACCL_UINT32);
JACCL_HPP_DTYPE(std::int64_t, JACCL_INT64);
JACCL_HPP_DTYPE(std::uint64_t, JACCL_UINT64);
JACCL_HPP_DTYPE(float, JACCL_FLOAT32);
JACCL_HPP_DTYPE(double, JACCL_FLOAT64);
JACCL_HPP_DTYPE(bool, JACCL_BOOL);
JACCL_HPP_DTYPE(std::complex<float>, JACCL_COMPLEX64);
#undef JACCL_HPP_DTYPE

enum class Op {
    sum = JACCL_SUM,
    prod = JACCL_PROD,
    min = JACCL_MIN,
    max = JACCL_MAX,
    avg = JACCL_AVG
};

class Comm
{
  public:
    // Joins the job described by the environment (JACCL_RANK, ...); collective.
    static Comm from_env()
    {
        jaccl_comm_t c = nullptr;
        jaccl_result_t rc = jaccl_comm_init_env(&c);
        if (rc != JACCL_SUCCESS)
            throw Error(rc, std::string("jaccl_comm_init_env: ") + jaccl_last_error(nullptr));
        return Comm(c);
    }
    Comm(Comm &&o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    Comm &operator=(Comm &&o) noexcept
    {
        if (this != &o) {
            jaccl_comm_destroy(c_);
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    Comm(const Comm &) = delete;
    Comm &operator=(const Comm &) = delete;
    ~Comm() { jaccl_comm_destroy(c_); }

    int rank() const { return jaccl_comm_rank(c_); }
    int size() const { return jaccl_comm_size(c_); }
    jaccl_comm_t get() const { return c_; }

    // In place over a contiguous range (std::vector, std::array, ...).
    template <typename R> void allreduce(R &r, Op op = Op::sum)
    {
        using T = std::remove_reference_t<decltype(*std::data(r))>;
        check(jaccl_allreduce(std::data(r), std::data(r), std::size(r), dtype_of<T>::value,
                              static_cast<jaccl_op_t>(op), c_),
              "allreduce");
    }
    // out holds size() * std::size(in) elements, rank r's block at r * std::size(in).
    template <typename R, typename S> void allgather(const R &in, S &out)
    {
        using T = std::remove_cv_t<std::remove_reference_t<decltype(*std::data(in))>>;
        if (std::size(out) != std::size(in) * static_cast<size_t>(size()))
            throw Error(JACCL_ERR_INVALID_ARGUMENT, "allgather: out must hold size() blocks");
        check(jaccl_allgather(std::data(in), std::data(out), std::size(in), dtype_of<T>::value, c_),
              "allgather");
    }
    template <typename T> void send(const T *buf, size_t n, int peer)
    {
        check(jaccl_send(buf, n, dtype_of<T>::value, peer, c_), "send");
    }
    template <typename T> void recv(T *buf, size_t n, int peer)
    {
        check(jaccl_recv(buf, n, dtype_of<T>::value, peer, c_), "recv");
    }
    void barrier() { check(jaccl_barrier(c_), "barrier"); }

    // Ranks passing the same color form a new communicator; std::nullopt for
    // JACCL_SPLIT_NOCOLOR.
    std::optional<Comm> split(int color, int key = 0)
    {
        jaccl_comm_t n = nullptr;
        check(jaccl_comm_split(c_, color, key, &n), "split");
        if (!n) return std::nullopt;
        return Comm(n);
    }

  private:
    explicit Comm(jaccl_comm_t c) : c_(c) {}
    void check(jaccl_result_t rc, const char *call) const
    {
        if (rc != JACCL_SUCCESS) throw Error(rc, std::string(call) + ": " + jaccl_last_error(c_));
    }
    jaccl_comm_t c_;
};

// Sends and receives issued while a Group is alive run together when it ends
// (end() or the destructor), so no ordering of them can deadlock.  Call end()
// to see errors; the destructor can only swallow them.
class Group
{
  public:
    Group() { jaccl_group_start(); }
    void end()
    {
        if (!open_) return;
        open_ = false;
        jaccl_result_t rc = jaccl_group_end();
        if (rc != JACCL_SUCCESS) throw Error(rc, "group_end");
    }
    ~Group()
    {
        if (open_) jaccl_group_end();
    }
    Group(const Group &) = delete;
    Group &operator=(const Group &) = delete;

  private:
    bool open_ = true;
};

} // namespace jaccl

#endif // JACCL_HPP
