/*
 * spool.c: the files.  A target's spool is three folders:
 *
 *   incoming/  producers rename batch files in; we only ever rename out
 *   active/    the batch being delivered, <seq>.batch, and beside it
 *              <seq>.state (where it stands), <seq>.failed and
 *              <seq>.errors (rows set aside so far, with the reasons)
 *   failed/    what could not be delivered; nothing here is overwritten
 *
 * Crash safety rests on two rules.  The state file is only ever replaced
 * whole (file_write_atomic) and it is written before anything it
 * describes happens: before a batch leaves incoming/, before set-aside
 * rows are moved to failed/.  And the append-only files in active/ are cut
 * back to the lengths the state file records before they are appended to,
 * so a row set aside twice across a crash is written once.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmsyncd.h"

#define STATE_MAGIC	"mmsyncd-state 1"
#define STATE_MAX	(16 * 1024)

struct spool {
	char		*target;
	char		*dir;		/* spool_dir/<target> */
	char		*incoming;
	char		*active;
	char		*failed;
	uint64_t	 next_seq;

	char		**queue;	/* names in incoming/, sorted */
	size_t		 nqueue;
	size_t		 capqueue;
};

static int	state_write(struct spool *, const struct batch *);
static int	finish_move(struct spool *, struct batch *, bool whole);

static char *
path_of(const char *dir, const char *name)
{
	char	*p;

	xasprintf(&p, "%s/%s", dir, name);
	return p;
}

static char *
active_path(const struct spool *sp, uint64_t seq, const char *ext)
{
	char	*p;

	xasprintf(&p, "%s/%020" PRIu64 ".%s", sp->active, seq, ext);
	return p;
}

static void
set_group(const char *path, const char *group)
{
	struct group	*gr;

	if (group == NULL)
		return;
	if ((gr = getgrnam(group)) == NULL) {
		log_warnx("%s: unknown group %s", path, group);
		return;
	}
	if (chown(path, (uid_t)-1, gr->gr_gid) == -1)
		log_warn("%s: cannot set group %s", path, group);
}

struct spool *
spool_open(const struct config *cf, const char *target, char **cause)
{
	struct spool	*sp = xcalloc(1, sizeof *sp);

	sp->target = xstrdup(target);
	sp->dir = path_of(cf->spool_dir, target);
	sp->incoming = path_of(sp->dir, "incoming");
	sp->active = path_of(sp->dir, "active");
	sp->failed = path_of(sp->dir, "failed");
	sp->next_seq = 1;

	/* Producers need to reach incoming/ through the target folder. */
	if (dir_make(sp->dir, 0755) == -1 ||
	    dir_make(sp->incoming, cf->spool_mode) == -1 ||
	    dir_make(sp->active, 0700) == -1 ||
	    dir_make(sp->failed, 0750) == -1) {
		xasprintf(cause, "cannot create spool folders in %s: %s",
		    sp->dir, strerror(errno));
		spool_close(sp);
		return NULL;
	}
	/* mkdir obeys the umask: producers must reach incoming/, and
	 * incoming/ must have exactly its mode. */
	if (chmod(sp->dir, 0755) == -1)
		log_warn("%s: chmod", sp->dir);
	if (chmod(sp->incoming, cf->spool_mode) == -1)
		log_warn("%s: chmod", sp->incoming);
	set_group(sp->incoming, cf->spool_group);
	return sp;
}

void
spool_close(struct spool *sp)
{
	size_t	i;

	if (sp == NULL)
		return;
	for (i = 0; i < sp->nqueue; i++)
		free(sp->queue[i]);
	free(sp->queue);
	free(sp->target);
	free(sp->dir);
	free(sp->incoming);
	free(sp->active);
	free(sp->failed);
	free(sp);
}

const char *
spool_incoming_dir(const struct spool *sp)
{
	return sp->incoming;
}

/* ---------------------------------------------------------------- queue */

/* Index where NAME is or would go; *found tells which. */
static size_t
queue_find(const struct spool *sp, const char *name, bool *found)
{
	size_t	lo = 0, hi = sp->nqueue, mid;
	int	c;

	*found = false;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = strcmp(sp->queue[mid], name);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void
spool_queue_add(struct spool *sp, const char *name)
{
	size_t	at;
	bool	found;

	if (batch_format_of(name) == -1)
		return;
	at = queue_find(sp, name, &found);
	if (found)
		return;
	if (sp->nqueue == sp->capqueue) {
		sp->capqueue = sp->capqueue ? sp->capqueue * 2 : 16;
		sp->queue = xreallocarray(sp->queue, sp->capqueue,
		    sizeof *sp->queue);
	}
	memmove(sp->queue + at + 1, sp->queue + at,
	    (sp->nqueue - at) * sizeof *sp->queue);
	sp->queue[at] = xstrdup(name);
	sp->nqueue++;
}

void
spool_queue_remove(struct spool *sp, const char *name)
{
	size_t	at;
	bool	found;

	at = queue_find(sp, name, &found);
	if (!found)
		return;
	free(sp->queue[at]);
	memmove(sp->queue + at, sp->queue + at + 1,
	    (sp->nqueue - at - 1) * sizeof *sp->queue);
	sp->nqueue--;
}

size_t
spool_queued(const struct spool *sp)
{
	return sp->nqueue;
}

void
spool_rescan(struct spool *sp)
{
	DIR		*d;
	struct dirent	*de;
	size_t		 i;

	for (i = 0; i < sp->nqueue; i++)
		free(sp->queue[i]);
	sp->nqueue = 0;
	if ((d = opendir(sp->incoming)) == NULL) {
		log_warn("%s: cannot read", sp->incoming);
		return;
	}
	while ((de = readdir(d)) != NULL)
		spool_queue_add(sp, de->d_name);
	closedir(d);
}

/* ---------------------------------------------------------- state files */

/* Names may hold any byte but '/' and NUL: escape what would break a
 * line-based file. */
static void
escape_name(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s <= 0x20 || *s == '%' || *s == 0x7f)
			buf_printf(b, "%%%02X", (unsigned char)*s);
		else
			buf_addc(b, *s);
	}
}

static char *
unescape_name(const char *s)
{
	struct buf	b;
	unsigned int	c;

	buf_init(&b);
	buf_reserve(&b, strlen(s));
	while (*s != '\0') {
		if (*s == '%' && sscanf(s + 1, "%2X", &c) == 1 && c != 0) {
			buf_addc(&b, (char)c);
			s += 3;
		} else
			buf_addc(&b, *s++);
	}
	return b.data;
}

static int
state_write(struct spool *sp, const struct batch *b)
{
	struct buf	 s;
	char		*path;
	int		 r, saved;

	buf_init(&s);
	buf_printf(&s, STATE_MAGIC "\nname ");
	escape_name(&s, b->name);
	buf_printf(&s, "\nid %s\nformat %s\noffset %" PRIu64 "\nline %" PRIu64
	    "\nrow %" PRIu64 "\nfailed_len %" PRIu64 "\nerrors_len %" PRIu64
	    "\nnfailed %" PRIu64 "\n", b->id,
	    b->format == BATCH_JSON ? "json" : "ndjson", b->pos.offset,
	    b->pos.line, b->pos.row, b->failed_len, b->errors_len,
	    b->nfailed);
	if (b->rows_known)
		buf_printf(&s, "rows_total %" PRIu64 "\n", b->rows_total);
	/* Whatever goes out next goes out after this: the lower bound of a
	 * lookup for it after a crash. */
	buf_printf(&s, "written_at %" PRIu64 "\n", wall_ms());
	if (b->whole)
		buf_addstr(&s, "whole 1\n");
	if (b->finish_stem != NULL) {
		buf_addstr(&s, "finish ");
		escape_name(&s, b->finish_stem);
		buf_addc(&s, '\n');
	}
	path = active_path(sp, b->seq, "state");
	r = file_write_atomic(path, s.data, s.len, 0600);
	saved = errno;
	free(path);
	buf_free(&s);
	errno = saved;
	return r;
}

static int
parse_u64(const char *s, uint64_t *out)
{
	char			*end;
	unsigned long long	 v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* Read a state file into B; -1 if it is not one of ours. */
static int
state_read(struct spool *sp, uint64_t seq, struct batch *b)
{
	char		*path, *text, *line, *next, *val;
	uint64_t	*field;
	int		 r = -1;
	bool		 have_name = false, have_id = false;

	path = active_path(sp, seq, "state");
	if (file_read_small(path, STATE_MAX, &text, NULL) == -1) {
		free(path);
		return -1;
	}
	free(path);
	if (strncmp(text, STATE_MAGIC "\n", sizeof STATE_MAGIC) != 0)
		goto out;
	for (line = text + sizeof STATE_MAGIC; *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) == NULL)
			goto out;	/* cut short: not written by us */
		*next++ = '\0';
		if ((val = strchr(line, ' ')) == NULL)
			goto out;
		*val++ = '\0';
		field = NULL;
		if (strcmp(line, "name") == 0 && !have_name) {
			b->name = unescape_name(val);
			have_name = *b->name != '\0' &&
			    strchr(b->name, '/') == NULL;
		} else if (strcmp(line, "id") == 0) {
			if (strlen(val) != 16 ||
			    strspn(val, "0123456789abcdef") != 16)
				goto out;
			memcpy(b->id, val, 17);
			have_id = true;
		} else if (strcmp(line, "format") == 0) {
			if (strcmp(val, "json") == 0)
				b->format = BATCH_JSON;
			else if (strcmp(val, "ndjson") == 0)
				b->format = BATCH_NDJSON;
			else
				goto out;
		} else if (strcmp(line, "whole") == 0)
			b->whole = true;
		else if (strcmp(line, "finish") == 0 && b->finish_stem == NULL)
			b->finish_stem = unescape_name(val);
		else if (strcmp(line, "offset") == 0)
			field = &b->pos.offset;
		else if (strcmp(line, "line") == 0)
			field = &b->pos.line;
		else if (strcmp(line, "row") == 0)
			field = &b->pos.row;
		else if (strcmp(line, "failed_len") == 0)
			field = &b->failed_len;
		else if (strcmp(line, "errors_len") == 0)
			field = &b->errors_len;
		else if (strcmp(line, "nfailed") == 0)
			field = &b->nfailed;
		else if (strcmp(line, "written_at") == 0)
			field = &b->written_at;
		else if (strcmp(line, "rows_total") == 0) {
			field = &b->rows_total;
			b->rows_known = true;
		} else
			goto out;
		if (field != NULL && parse_u64(val, field) == -1)
			goto out;
	}
	if (have_name && have_id)
		r = 0;
out:
	free(text);
	return r;
}

/* ------------------------------------------------------------- batches */

static struct batch *
batch_new(const char *name, uint64_t seq)
{
	struct batch	*b = xcalloc(1, sizeof *b);
	unsigned char	 rnd[8];
	size_t		 i;

	b->name = xstrdup(name);
	b->seq = seq;
	b->fd = -1;
	b->format = batch_format_of(name) == BATCH_JSON ? BATCH_JSON :
	    BATCH_NDJSON;
	b->pos.line = 1;
	random_bytes(rnd, sizeof rnd);
	for (i = 0; i < sizeof rnd; i++)
		snprintf(b->id + 2 * i, 3, "%02x", rnd[i]);
	return b;
}

void
spool_batch_free(struct batch *b)
{
	if (b == NULL)
		return;
	if (b->fd != -1)
		close(b->fd);
	free(b->name);
	free(b->finish_stem);
	free(b);
}

static int
open_batch_file(struct spool *sp, struct batch *b)
{
	struct stat	 st;
	char		*path = active_path(sp, b->seq, "batch");
	int		 fd, saved;

	/* O_NONBLOCK: a FIFO must never stall the loop; O_NOFOLLOW: a
	 * symlink is never followed. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	saved = errno;
	free(path);
	if (fd == -1) {
		errno = saved;
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	b->fd = fd;
	return 0;
}

/* Cut an append-only file of active/ back to its durable length. */
static int
truncate_active(struct spool *sp, uint64_t seq, const char *ext,
    uint64_t len)
{
	char	*path = active_path(sp, seq, ext);
	int	 r = 0, saved;

	if (truncate(path, (off_t)len) == -1 && !(errno == ENOENT && len == 0))
		r = -1;
	saved = errno;
	free(path);
	errno = saved;
	return r;
}

static void
unlink_active(struct spool *sp, uint64_t seq, const char *ext)
{
	char	*path = active_path(sp, seq, ext);

	if (unlink(path) == -1 && errno != ENOENT)
		log_warn("%s: cannot remove", path);
	free(path);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t	x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Look at what an earlier run left in active/: the lowest sequence number
 * with a state or batch file is the batch to go on with.
 */
int
spool_resume(struct spool *sp, struct batch **out, char **cause)
{
	DIR		*d;
	struct dirent	*de;
	uint64_t	*seqs = NULL, seq;
	size_t		 nseqs = 0, cap = 0, i;
	char		*end, *path, *batchpath;
	struct batch	*b;
	struct stat	 st;
	bool		 have_batch;
	int		 r = 0;

	*out = NULL;
	if ((d = opendir(sp->active)) == NULL) {
		xasprintf(cause, "%s: %s", sp->active, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		errno = 0;
		seq = strtoull(de->d_name, &end, 10);
		if (end == de->d_name || *end != '.' || errno != 0)
			continue;
		if (strcmp(end, ".tmp") == 0 ||
		    (strlen(end) > 4 && strcmp(end + strlen(end) - 4,
		    ".tmp") == 0)) {
			/* Half of an atomic write that never happened. */
			path = path_of(sp->active, de->d_name);
			unlink(path);
			free(path);
			continue;
		}
		if (seq >= sp->next_seq)
			sp->next_seq = seq + 1;
		if (nseqs == 0 || seqs[nseqs - 1] != seq) {
			if (nseqs == cap) {
				cap = cap ? cap * 2 : 8;
				seqs = xreallocarray(seqs, cap, sizeof *seqs);
			}
			seqs[nseqs++] = seq;
		}
	}
	closedir(d);
	if (nseqs > 1)
		qsort(seqs, nseqs, sizeof *seqs, cmp_u64);

	for (i = 0; i < nseqs && *out == NULL; i++) {
		if (i > 0 && seqs[i] == seqs[i - 1])
			continue;
		seq = seqs[i];
		batchpath = active_path(sp, seq, "batch");
		have_batch = lstat(batchpath, &st) == 0;
		free(batchpath);

		b = batch_new("unknown", seq);
		free(b->name);
		b->name = NULL;
		if (state_read(sp, seq, b) == -1) {
			if (b->name == NULL)
				b->name = xstrdup("unknown.ndjson");
			free(b->finish_stem);
			b->finish_stem = NULL;
			b->failed_len = b->errors_len = b->nfailed = 0;
			b->whole = false;
			unlink_active(sp, seq, "failed");
			unlink_active(sp, seq, "errors");
			if (!have_batch) {
				log_warnx("%s: active/%020" PRIu64 ".state: "
				    "unreadable and no batch: removed",
				    sp->target, seq);
				unlink_active(sp, seq, "state");
				spool_batch_free(b);
				continue;
			}
			/* Throwing rows away is worse than setting them
			 * aside: the operator can look and retry them. */
			log_warnx("%s: progress of active batch %020" PRIu64
			    " unreadable: setting the batch aside", sp->target,
			    seq);
			if (spool_set_aside_batch(sp, b, &(struct set_aside){
			    0, "", "progress file unreadable after a crash; "
			    "some rows may have been delivered" }, 0) == -1) {
				xasprintf(cause, "cannot set aside batch "
				    "%020" PRIu64 ": %s", seq, strerror(errno));
				spool_batch_free(b);
				r = -1;
				break;
			}
			continue;
		}
		if (b->finish_stem != NULL || !have_batch) {
			/*
			 * Stopped while moving to failed/, or (no batch) the
			 * state was written and the rename out of incoming/
			 * never happened: finish whatever is there.
			 */
			if (!have_batch && b->finish_stem == NULL)
				b->whole = false;
			if (finish_move(sp, b, b->whole && have_batch) == -1) {
				xasprintf(cause, "cannot finish batch %s: %s",
				    b->name, strerror(errno));
				spool_batch_free(b);
				r = -1;
				break;
			}
			spool_batch_free(b);
			continue;
		}
		if (truncate_active(sp, seq, "failed", b->failed_len) == -1 ||
		    truncate_active(sp, seq, "errors", b->errors_len) == -1) {
			xasprintf(cause, "cannot resume batch %s: %s",
			    b->name, strerror(errno));
			spool_batch_free(b);
			r = -1;
			break;
		}
		if (open_batch_file(sp, b) == -1) {
			if (errno != ELOOP && errno != EINVAL) {
				xasprintf(cause, "cannot resume batch %s: %s",
				    b->name, strerror(errno));
				spool_batch_free(b);
				r = -1;
				break;
			}
			/* Taken, but never a batch: a link, FIFO, folder
			 * whose setting aside was interrupted. */
			log_warnx("%s: %s is not a regular file: set aside",
			    sp->target, b->name);
			if (spool_set_aside_batch(sp, b, &(struct set_aside){
			    0, "", "not a regular file" }, 0) == -1) {
				xasprintf(cause, "cannot set aside %s: %s",
				    b->name, strerror(errno));
				spool_batch_free(b);
				r = -1;
				break;
			}
			continue;
		}
		if (b->pos.row > 0)
			log_info("%s: resuming %s at row %" PRIu64,
			    sp->target, b->name, b->pos.row + 1);
		*out = b;
		r = 1;
	}
	free(seqs);
	return r;
}

/* Move SRC to DST unless DST exists (then EEXIST). */
static int
move_noreplace(const char *src, const char *dst)
{
	if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	/* A file system without RENAME_NOREPLACE: link refuses to
	 * overwrite just the same (not for directories). */
	if (link(src, dst) == -1)
		return -1;
	return unlink(src);
}

static bool
exists(const char *path)
{
	struct stat	st;

	return lstat(path, &st) == 0;
}

/* The part of NAME before its batch extension. */
static char *
name_stem(const char *name, const char **ext)
{
	static const char *const exts[] = { ".ndjson", ".jsonl", ".json" };
	size_t			 i, n = strlen(name), e;

	for (i = 0; i < sizeof exts / sizeof exts[0]; i++) {
		e = strlen(exts[i]);
		if (n > e && strcmp(name + n - e, exts[i]) == 0) {
			*ext = exts[i];
			return xstrndup(name, n - e);
		}
	}
	*ext = ".ndjson";
	return xstrdup(name);
}

/* A stem under which neither failed/<stem><ext> nor .errors exists. */
static char *
free_stem(struct spool *sp, const char *stem, const char *ext)
{
	char		*cand, *a, *b;
	unsigned	 n;
	bool		 taken;

	for (n = 0;; n++) {
		if (n == 0)
			cand = xstrdup(stem);
		else
			xasprintf(&cand, "%s-%u", stem, n);
		xasprintf(&a, "%s/%s%s", sp->failed, cand, ext);
		xasprintf(&b, "%s/%s.errors", sp->failed, cand);
		taken = exists(a) || exists(b);
		free(a);
		free(b);
		if (!taken)
			return cand;
		free(cand);
	}
}

/*
 * Move what B set aside to failed/ and forget B: the rows file (or the
 * batch itself when WHOLE) and the .errors.  The chosen stem is made
 * durable first, so a restart half-way moves the rest under the same
 * names instead of making a second copy.
 */
static int
finish_move(struct spool *sp, struct batch *b, bool whole)
{
	const char	*ext;
	char		*stem, *src[2], *dst[2] = { NULL, NULL };
	int		 i, r = -1, attempt;

	src[0] = active_path(sp, b->seq, whole ? "batch" : "failed");
	src[1] = active_path(sp, b->seq, "errors");
	stem = name_stem(b->name, &ext);
	if (!whole)
		ext = ".ndjson";

	for (attempt = 0; attempt < 100; attempt++) {
		if (!exists(src[0]) && !exists(src[1])) {
			r = 0;
			break;
		}
		if (b->finish_stem == NULL) {
			b->finish_stem = free_stem(sp, stem, ext);
			if (state_write(sp, b) == -1) {
				/* Only a durable choice may be used. */
				free(b->finish_stem);
				b->finish_stem = NULL;
				break;
			}
		}
		free(dst[0]);
		free(dst[1]);
		xasprintf(&dst[0], "%s/%s%s", sp->failed, b->finish_stem, ext);
		xasprintf(&dst[1], "%s/%s.errors", sp->failed,
		    b->finish_stem);
		for (i = 0; i < 2; i++) {
			if (!exists(src[i]) || move_noreplace(src[i],
			    dst[i]) == 0)
				continue;
			if (errno != EEXIST)
				goto out;
			/* Someone took the name meanwhile: pick again. */
			free(b->finish_stem);
			b->finish_stem = NULL;
			break;
		}
		if (i == 2) {
			r = 0;
			break;
		}
	}
	if (r == 0) {
		if (dir_sync(sp->failed) == -1)
			log_warn("%s: fsync", sp->failed);
		if (b->finish_stem != NULL)
			log_info("%s: %s: %s set aside in failed/%s%s",
			    sp->target, b->name, whole ? "batch" : "rows",
			    b->finish_stem, ext);
		unlink_active(sp, b->seq, "batch");
		unlink_active(sp, b->seq, "failed");
		unlink_active(sp, b->seq, "errors");
		unlink_active(sp, b->seq, "state");
		if (dir_sync(sp->active) == -1)
			log_warn("%s: fsync", sp->active);
	}
out:
	free(stem);
	free(src[0]);
	free(src[1]);
	free(dst[0]);
	free(dst[1]);
	return r;
}

int
spool_take(struct spool *sp, struct batch **out, char **cause)
{
	struct batch	*b;
	struct stat	 st;
	char		*name, *src, *dst, reason[128];
	const char	*why;
	int		 saved;

	*out = NULL;
	while (sp->nqueue > 0) {
		name = xstrdup(sp->queue[0]);
		spool_queue_remove(sp, name);
		src = path_of(sp->incoming, name);
		if (lstat(src, &st) == -1) {
			saved = errno;
			free(src);
			if (saved == ENOENT) {
				free(name);	/* gone already */
				continue;
			}
			xasprintf(cause, "%s/%s: %s", sp->incoming, name,
			    strerror(saved));
			spool_queue_add(sp, name);
			free(name);
			return -1;
		}
		b = batch_new(name, sp->next_seq++);
		free(name);
		dst = active_path(sp, b->seq, "batch");
		if (state_write(sp, b) == -1 || rename(src, dst) == -1) {
			saved = errno;
			unlink_active(sp, b->seq, "state");
			free(src);
			free(dst);
			if (saved == ENOENT) {
				spool_batch_free(b);
				continue;
			}
			xasprintf(cause, "cannot take %s/%s: %s", sp->incoming,
			    b->name, strerror(saved));
			spool_queue_add(sp, b->name);
			spool_batch_free(b);
			return -1;
		}
		free(src);
		free(dst);
		/* The move must be durable before a row goes out, or a
		 * power cut would bring the whole batch back. */
		if (dir_sync(sp->active) == -1 || dir_sync(sp->incoming) == -1)
			log_warn("%s: fsync", sp->dir);

		why = NULL;
		if (!S_ISREG(st.st_mode))
			why = S_ISLNK(st.st_mode) ? "a symbolic link (not "
			    "followed)" : S_ISDIR(st.st_mode) ? "a directory" :
			    "not a regular file";
		else if (open_batch_file(sp, b) == -1) {
			snprintf(reason, sizeof reason, "cannot be read: %s",
			    errno == EINVAL ? "not a regular file" :
			    strerror(errno));
			why = reason;
		}
		if (why != NULL) {
			log_warnx("%s: incoming/%s: %s: set aside",
			    sp->target, b->name, why);
			if (spool_set_aside_batch(sp, b, &(struct set_aside){
			    0, "", why }, 0) == -1) {
				xasprintf(cause, "cannot set aside %s: %s",
				    b->name, strerror(errno));
				spool_batch_free(b);
				return -1;
			}
			continue;
		}
		log_info("%s: took %s", sp->target, b->name);
		*out = b;
		return 1;
	}
	return 0;
}

int
spool_commit(struct spool *sp, struct batch *b, const struct batch_pos *pos)
{
	struct batch_pos	old = b->pos;

	b->pos = *pos;
	if (state_write(sp, b) == -1) {
		b->pos = old;
		return -1;
	}
	return 0;
}

static void
errors_line(struct buf *o, uint64_t line, uint64_t row,
    const struct set_aside *why)
{
	char	stamp[32];

	format_rfc3339(wall_ms(), stamp);
	buf_addstr(o, "{\"line\": ");
	if (line > 0)
		buf_printf(o, "%" PRIu64, line);
	else
		buf_addstr(o, "null");
	buf_addstr(o, ", \"row\": ");
	if (row > 0)
		buf_printf(o, "%" PRIu64, row);
	else
		buf_addstr(o, "null");
	buf_addstr(o, ", \"status\": ");
	if (why->status > 0)
		buf_printf(o, "%ld", why->status);
	else
		buf_addstr(o, "null");
	buf_addstr(o, ", \"error_id\": ");
	if (why->error_id != NULL && *why->error_id != '\0')
		buf_add_json_string(o, why->error_id, strlen(why->error_id));
	else
		buf_addstr(o, "null");
	buf_addstr(o, ", \"reason\": ");
	buf_add_json_string(o, why->reason, strlen(why->reason));
	buf_printf(o, ", \"time\": \"%s\"}\n", stamp);
}

/* Open an append-only file of active/ cut back to its durable LEN. */
static int
open_append(struct spool *sp, uint64_t seq, const char *ext, uint64_t len)
{
	char	*path = active_path(sp, seq, ext);
	int	 fd, saved;

	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	saved = errno;
	free(path);
	if (fd == -1) {
		errno = saved;
		return -1;
	}
	if (ftruncate(fd, (off_t)len) == -1 ||
	    lseek(fd, (off_t)len, SEEK_SET) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int
write_full(int fd, const char *p, size_t n)
{
	ssize_t	w;

	while (n > 0) {
		if ((w = write(fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Copy the row's bytes from the batch to FD as one line.  Line ends
 * inside a pretty-printed .json row are white space in JSON (never inside
 * a string), so they become spaces.
 */
static int
copy_row(struct batch *b, const struct batch_item *item, int fd,
    uint64_t *written)
{
	char		chunk[65536];
	uint64_t	off = item->offset, left = item->length;
	ssize_t		n;
	size_t		i;

	*written = 0;
	while (left > 0) {
		n = pread(b->fd, chunk, left < sizeof chunk ? left :
		    sizeof chunk, (off_t)off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;		/* cut short under us: keep what was */
		for (i = 0; i < (size_t)n; i++)
			if (chunk[i] == '\n' || chunk[i] == '\r')
				chunk[i] = ' ';
		if (write_full(fd, chunk, (size_t)n) == -1)
			return -1;
		off += (uint64_t)n;
		left -= (uint64_t)n;
		*written += (uint64_t)n;
	}
	if (write_full(fd, "\n", 1) == -1)
		return -1;
	(*written)++;
	return 0;
}

int
spool_set_aside_rows(struct spool *sp, struct batch *b,
    const struct batch_item *items, size_t n, const struct set_aside *why,
    const struct batch_pos *after)
{
	struct buf		 lines;
	struct batch		 old = *b;
	uint64_t		 written, total = 0;
	size_t			 i;
	int			 fd = -1, efd = -1, saved;

	buf_init(&lines);
	for (i = 0; i < n; i++)
		errors_line(&lines, items[i].line, items[i].row, why);
	if ((fd = open_append(sp, b->seq, "failed", b->failed_len)) == -1)
		goto fail;
	for (i = 0; i < n; i++) {
		if (copy_row(b, &items[i], fd, &written) == -1)
			goto fail;
		total += written;
	}
	if (fdatasync(fd) == -1)
		goto fail;
	if ((efd = open_append(sp, b->seq, "errors", b->errors_len)) == -1 ||
	    write_full(efd, lines.data, lines.len) == -1 ||
	    fdatasync(efd) == -1)
		goto fail;
	b->failed_len += total;
	b->errors_len += lines.len;
	b->nfailed += n;
	b->pos = *after;
	if (state_write(sp, b) == -1)
		goto fail;
	close(fd);
	close(efd);
	buf_free(&lines);
	return 0;
fail:
	saved = errno;
	b->failed_len = old.failed_len;
	b->errors_len = old.errors_len;
	b->nfailed = old.nfailed;
	b->pos = old.pos;
	if (fd != -1)
		close(fd);
	if (efd != -1)
		close(efd);
	buf_free(&lines);
	errno = saved;
	return -1;
}

int
spool_set_aside_batch(struct spool *sp, struct batch *b,
    const struct set_aside *why, uint64_t line)
{
	struct buf	text;
	size_t		added;
	int		fd, saved;

	buf_init(&text);
	errors_line(&text, line, 0, why);
	if ((fd = open_append(sp, b->seq, "errors", b->errors_len)) == -1)
		goto fail;
	if (write_full(fd, text.data, text.len) == -1 || fdatasync(fd) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		goto fail;
	}
	close(fd);
	added = text.len;
	b->errors_len += added;
	b->whole = true;
	buf_free(&text);
	if (finish_move(sp, b, true) == -1) {
		/* Not durable: the next attempt writes the line again. */
		b->errors_len -= added;
		return -1;
	}
	spool_batch_free(b);
	return 0;
fail:
	buf_free(&text);
	return -1;
}

int
spool_finish(struct spool *sp, struct batch *b)
{
	if (b->nfailed == 0) {
		/* Batch before state: a state without its batch is read at
		 * start as "finished". */
		unlink_active(sp, b->seq, "batch");
		unlink_active(sp, b->seq, "failed");
		unlink_active(sp, b->seq, "errors");
		unlink_active(sp, b->seq, "state");
		if (dir_sync(sp->active) == -1)
			log_warn("%s: fsync", sp->active);
	} else if (finish_move(sp, b, false) == -1)
		return -1;
	log_info("%s: finished %s (%" PRIu64 " rows, %" PRIu64 " set aside)",
	    sp->target, b->name, b->pos.row, b->nfailed);
	spool_batch_free(b);
	return 0;
}

int
spool_retry_failed(struct spool *sp, char **cause)
{
	DIR		*d;
	struct dirent	*de;
	char		*src, *dst, *stem;
	const char	*ext;
	unsigned	 n;
	int		 count = 0;

	if ((d = opendir(sp->failed)) == NULL) {
		xasprintf(cause, "cannot read %s: %s", sp->failed,
		    strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (batch_format_of(de->d_name) == -1)
			continue;
		src = path_of(sp->failed, de->d_name);
		stem = name_stem(de->d_name, &ext);
		for (n = 0; n < 1000; n++) {
			if (n == 0)
				dst = path_of(sp->incoming, de->d_name);
			else
				xasprintf(&dst, "%s/%s-%u%s", sp->incoming,
				    stem, n, ext);
			if (move_noreplace(src, dst) == 0) {
				spool_queue_add(sp, strrchr(dst, '/') + 1);
				count++;
				free(dst);
				break;
			}
			free(dst);
			if (errno != EEXIST) {
				log_warn("%s: cannot move %s back to incoming/",
				    sp->target, de->d_name);
				break;
			}
		}
		free(stem);
		free(src);
	}
	closedir(d);
	if (count > 0 && dir_sync(sp->incoming) == -1)
		log_warn("%s: fsync", sp->incoming);
	return count;
}
