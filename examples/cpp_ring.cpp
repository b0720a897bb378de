// C++ with RAII (examples/jaccl.hpp): a ring shift, an all-reduce of a vector,
// an all-gather and a split, with errors as exceptions.  Exits non-zero if any
// result differs from what the ranks can compute alone.
#include "jaccl.hpp"

#include <cstdio>
#include <numeric>
#include <vector>

static int run(jaccl::Comm &comm)
{
    const int rank = comm.rank(), np = comm.size();
    int bad = 0;

    // Ring: pass a token to the right; grouped so the send/recv order cannot deadlock.
    const int right = (rank + 1) % np, left = (rank + np - 1) % np;
    std::int64_t token = 100 + rank, got = -1;
    if (np > 1) {
        jaccl::Group g;
        comm.send(&token, 1, right);
        comm.recv(&got, 1, left);
        g.end();
    } else {
        got = token;
    }
    bad += got != 100 + left;

    // All-reduce in place over a std::vector.
    std::vector<double> v(1000);
    std::iota(v.begin(), v.end(), static_cast<double>(rank));
    comm.allreduce(v);
    for (size_t i = 0; i < v.size(); i++)
        bad += v[i] != static_cast<double>(np) * static_cast<double>(i) + np * (np - 1) / 2.0;

    // All-gather of every rank's id.
    std::vector<std::int32_t> one{rank}, all(static_cast<size_t>(np));
    comm.allgather(one, all);
    for (int r = 0; r < np; r++) bad += all[static_cast<size_t>(r)] != r;

    // Even and odd ranks each sum their ranks; the child communicator is
    // destroyed at the end of the block.
    {
        std::optional<jaccl::Comm> half = comm.split(rank % 2);
        std::vector<int> s{rank};
        half->allreduce(s);
        int want = 0;
        for (int r = rank % 2; r < np; r += 2) want += r;
        bad += s[0] != want;
    }
    std::printf("rank %d of %d: token %lld from rank %d, v[999] = %g, %s\n", rank, np,
                static_cast<long long>(got), left, v[999], bad ? "WRONG" : "ok");
    return bad ? 1 : 0;
}

int main()
{
    try {
        jaccl::Comm comm = jaccl::Comm::from_env();
        return run(comm);
    } catch (const jaccl::Error &e) {
        std::fprintf(stderr, "jaccl error: %s\n", e.what());
        return 1;
    }
}
