/* Compressed qcow2 clusters (read only): raw deflate or zstd, per the
 * header's compression type.  The descriptor bounds the input to at most
 * two clusters, and the output must be exactly one cluster. */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "block/qcow2.h"

static int inflate_cluster(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
    z_stream z;
    int r;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, -15) != Z_OK)
        return -ENOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)in_len;
    z.next_out = out;
    z.avail_out = (uInt)out_len;
    r = inflate(&z, Z_FINISH);
    /* The stream may be cut at the sector boundary; a full cluster is OK. */
    if (r != Z_STREAM_END && (r != Z_BUF_ERROR || z.avail_out != 0))
        r = -EIO;
    else
        r = z.avail_out == 0 ? 0 : -EIO;
    inflateEnd(&z);
    return r;
}

static int zstd_cluster(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
    ZSTD_DStream *d = ZSTD_createDStream();
    ZSTD_inBuffer ib = { in, in_len, 0 };
    ZSTD_outBuffer ob = { out, out_len, 0 };
    int r = 0;

    if (!d)
        return -ENOMEM;
    ZSTD_initDStream(d);
    while (ob.pos < ob.size) {
        size_t before_o = ob.pos, before_i = ib.pos;
        size_t ret = ZSTD_decompressStream(d, &ob, &ib);

        /* Padding after the frame is not a frame: the cluster must be full
         * before the input stops making progress. */
        if (ZSTD_isError(ret) || (ob.pos == before_o && ib.pos == before_i)) {
            r = -EIO;
            break;
        }
    }
    ZSTD_freeDStream(d);
    return r;
}

int qcow2_read_compressed(struct block_state *bs, uint64_t entry, uint8_t *out)
{
    struct qcow2_state *s = qcow2_s(bs);
    uint64_t coff = entry & s->coffset_mask;
    uint64_t nsec = ((entry >> s->csize_shift) & s->csize_mask) + 1;
    uint64_t csize = nsec * 512 - (coff & 511);
    int r;

    if (coff >= s->file_size || csize > s->cbuf_len) {
        block_set_error(bs, "compressed cluster at 0x%llx is invalid",
                        (unsigned long long)coff);
        return -EIO;
    }
    r = block_file_pread(bs->fd, coff, s->cbuf, csize);
    if (r < 0)
        return r;
    if (s->ih.h.compression_type == 1)
        r = zstd_cluster(s->cbuf, csize, out, s->cluster_size);
    else
        r = inflate_cluster(s->cbuf, csize, out, s->cluster_size);
    if (r < 0)
        block_set_error(bs, "compressed cluster at 0x%llx does not decompress",
                        (unsigned long long)coff);
    return r;
}

ssize_t qcow2_compress_cluster(struct qcow2_state *s, const uint8_t *in, uint8_t *out,
                               size_t out_len)
{
    if (s->ih.h.compression_type == 1) {
        size_t n = ZSTD_compress(out, out_len, in, s->cluster_size, 3);

        return ZSTD_isError(n) ? -1 : (ssize_t)n;
    }
    z_stream z;
    ssize_t n = -1;

    memset(&z, 0, sizeof(z));
    /* QEMU's parameters: raw deflate, 4 KiB window. */
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)s->cluster_size;
    z.next_out = out;
    z.avail_out = (uInt)out_len;
    if (deflate(&z, Z_FINISH) == Z_STREAM_END)
        n = (ssize_t)(out_len - z.avail_out);
    deflateEnd(&z);
    return n;
}
