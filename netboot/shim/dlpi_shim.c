/*
 * Test-only: the libdlpi functions the illumos backend uses (dlpi_open,
 * dlpi_bind, dlpi_promiscon, dlpi_get_physaddr, dlpi_recv, dlpi_send,
 * dlpi_strerror, dlpi_close), implemented over a Linux AF_PACKET socket.
 * Built only with netboot's `dlpi-shim` feature, so that the real-socket
 * tests run the DLPI wiring on Linux. Not part of any release binary.
 *
 * Where it matters, it is as strict as libdlpi (libdlpi.c in illumos-gate,
 * usr/src/lib/libdlpi/common/), so that the tests catch what a real machine
 * would:
 *  - dlpi_recv in ordinary mode refuses a source buffer shorter than
 *    DLPI_PHYSADDR_MAX (DLPI_EINVAL), and so does dlpi_get_physaddr;
 *  - DLPI_RAW: whole frames in and out; dlpi_recv then fills in only
 *    dri_totmsglen and ignores the source buffer, dlpi_send ignores the
 *    destination;
 *  - without dlpi_promiscon(DL_PROMISC_PHYS), frames for other hosts are
 *    not delivered;
 *  - an interrupted poll is DL_SYSERR with errno EINTR, not retried (and
 *    dlpi_shim_inject_eintr makes the next calls fail so on purpose);
 *  - dlpi_strerror gives text, errno's for DL_SYSERR.
 * Other open flags are refused, so that a new one is not silently ignored.
 *
 * Constants and layouts from <libdlpi.h> (usr/src/lib/libdlpi/common/
 * libdlpi.h) and <sys/dlpi.h> (usr/src/uts/common/sys/dlpi.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* <libdlpi.h>: libdlpi's return codes, from 10000 in this order. */
#define DLPI_SUCCESS 10000
#define DLPI_EINVAL 10001
#define DLPI_ELINKNAMEINVAL 10002
#define DLPI_ENOLINK 10003
#define DLPI_EINHANDLE 10005
#define DLPI_ETIMEDOUT 10006
#define DLPI_FAILURE 10010
#define DLPI_PHYSADDR_MAX 64
#define DLPI_LINKNAME_MAX 32
#define DLPI_RAW 0x0004
/* <sys/dlpi.h> */
#define DL_SYSERR 0x04
#define DL_NOTSUPPORTED 0x12
#define DL_FACT_PHYS_ADDR 0x01
#define DL_CURR_PHYS_ADDR 0x02
#define DL_PROMISC_PHYS 0x01

typedef enum { DLPI_ADDRTYPE_UNICAST, DLPI_ADDRTYPE_GROUP } dlpi_addrtype_t;

/* <libdlpi.h> */
typedef struct {
	unsigned char dri_destaddr[DLPI_PHYSADDR_MAX];
	unsigned char dri_destaddrlen;
	dlpi_addrtype_t dri_destaddrtype;
	size_t dri_totmsglen;
} dlpi_recvinfo_t;

/* <sys/dlpi.h>: dl_priority_t, two t_scalar_t (int32_t). */
typedef struct {
	int32_t dl_min;
	int32_t dl_max;
} dl_priority_t;

/* <libdlpi.h> */
typedef struct {
	unsigned int dsi_sap;
	dl_priority_t dsi_prio;
} dlpi_sendinfo_t;

struct dlpi_impl {
	int fd;
	int ifindex;
	unsigned int flags;
	unsigned int sap;
	int promisc_phys;
	unsigned int eintr;	/* calls left to fail with EINTR */
	unsigned char mac[6];
};
typedef struct dlpi_impl *dlpi_handle_t;

/* Fails like an interrupted poll in libdlpi, if asked to. */
static int
injected_eintr(dlpi_handle_t dh)
{
	if (dh->eintr == 0)
		return (0);
	dh->eintr--;
	errno = EINTR;
	return (1);
}

void
dlpi_shim_inject_eintr(dlpi_handle_t dh, unsigned int count)
{
	if (dh != NULL)
		dh->eintr = count;
}

int
dlpi_open(const char *linkname, dlpi_handle_t *dhp, unsigned int flags)
{
	struct ifreq ifr;
	struct dlpi_impl *h;
	int ifindex;

	if (linkname == NULL || strlen(linkname) >= DLPI_LINKNAME_MAX ||
	    strlen(linkname) >= IFNAMSIZ)
		return (DLPI_ELINKNAMEINVAL);
	if (dhp == NULL || (flags & ~DLPI_RAW) != 0)
		return (DLPI_EINVAL);
	if ((ifindex = (int)if_nametoindex(linkname)) == 0)
		return (DLPI_ENOLINK);
	if ((h = calloc(1, sizeof (*h))) == NULL)
		return (DL_SYSERR);
	h->ifindex = ifindex;
	h->flags = flags;
	/* Protocol 0: nothing arrives until dlpi_bind picks the SAP. */
	if ((h->fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)) < 0) {
		int e = errno;
		free(h);
		errno = e;
		return (DL_SYSERR);
	}
	memset(&ifr, 0, sizeof (ifr));
	strncpy(ifr.ifr_name, linkname, IFNAMSIZ - 1);
	if (ioctl(h->fd, SIOCGIFHWADDR, &ifr) < 0) {
		int e = errno;
		close(h->fd);
		free(h);
		errno = e;
		return (DL_SYSERR);
	}
	memcpy(h->mac, ifr.ifr_hwaddr.sa_data, 6);
	*dhp = h;
	return (DLPI_SUCCESS);
}

int
dlpi_bind(dlpi_handle_t dh, unsigned int sap, unsigned int *boundsap)
{
	struct sockaddr_ll sll;

	if (dh == NULL)
		return (DLPI_EINHANDLE);
	memset(&sll, 0, sizeof (sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons((unsigned short)sap);
	sll.sll_ifindex = dh->ifindex;
	if (bind(dh->fd, (struct sockaddr *)&sll, sizeof (sll)) < 0)
		return (DL_SYSERR);
	dh->sap = sap;
	if (boundsap != NULL)
		*boundsap = sap;
	return (DLPI_SUCCESS);
}

int
dlpi_promiscon(dlpi_handle_t dh, unsigned int level)
{
	struct packet_mreq mr;

	if (dh == NULL)
		return (DLPI_EINHANDLE);
	if (level != DL_PROMISC_PHYS)
		return (DL_NOTSUPPORTED);	/* not emulated here */
	memset(&mr, 0, sizeof (mr));
	mr.mr_ifindex = dh->ifindex;
	mr.mr_type = PACKET_MR_PROMISC;
	if (setsockopt(dh->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr,
	    sizeof (mr)) < 0)
		return (DL_SYSERR);
	dh->promisc_phys = 1;
	return (DLPI_SUCCESS);
}

int
dlpi_get_physaddr(dlpi_handle_t dh, unsigned int type, void *addrp,
    size_t *addrlenp)
{
	if (dh == NULL)
		return (DLPI_EINHANDLE);
	if (addrlenp == NULL || addrp == NULL ||
	    *addrlenp < DLPI_PHYSADDR_MAX)
		return (DLPI_EINVAL);
	if (type != DL_CURR_PHYS_ADDR && type != DL_FACT_PHYS_ADDR)
		return (DL_NOTSUPPORTED);
	memcpy(addrp, dh->mac, 6);
	*addrlenp = 6;
	return (DLPI_SUCCESS);
}

int
dlpi_recv(dlpi_handle_t dh, void *saddrp, size_t *saddrlenp, void *msgbuf,
    size_t *msglenp, int msec, dlpi_recvinfo_t *recvp)
{
	unsigned char frame[ETH_FRAME_LEN + 64];
	struct sockaddr_ll from;
	socklen_t fromlen;
	struct pollfd pfd;
	ssize_t n;
	size_t len, off;
	int r;

	if (dh == NULL)
		return (DLPI_EINHANDLE);
	if ((msgbuf == NULL) != (msglenp == NULL))
		return (DLPI_EINVAL);
	for (;;) {
		if (injected_eintr(dh))
			return (DL_SYSERR);
		pfd.fd = dh->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		/* As libdlpi: an interrupted poll is an error, EINTR. */
		r = poll(&pfd, 1, msec);
		if (r < 0)
			return (DL_SYSERR);
		if (r == 0)
			return (DLPI_ETIMEDOUT);
		fromlen = sizeof (from);
		n = recvfrom(dh->fd, frame, sizeof (frame), MSG_DONTWAIT,
		    (struct sockaddr *)&from, &fromlen);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n < 0)
			return (DL_SYSERR);
		/*
		 * DLPI does not deliver our own frames, nor other hosts'
		 * unless promiscuous at the physical level.
		 */
		if (from.sll_pkttype == PACKET_OUTGOING || n < ETH_HLEN)
			continue;
		if (from.sll_pkttype == PACKET_OTHERHOST && !dh->promisc_phys)
			continue;
		break;
	}
	if (dh->flags & DLPI_RAW) {
		/* The whole frame; of the rest, only the total length. */
		len = (size_t)n;
		if (msgbuf != NULL) {
			if (len > *msglenp)
				len = *msglenp;
			memcpy(msgbuf, frame, len);
			*msglenp = len;
		}
		if (recvp != NULL)
			recvp->dri_totmsglen = (size_t)n;
		return (DLPI_SUCCESS);
	}
	off = ETH_HLEN;
	len = (size_t)n - off;
	if (saddrp != NULL && saddrlenp != NULL) {
		if (*saddrlenp < DLPI_PHYSADDR_MAX)
			return (DLPI_EINVAL);
		memcpy(saddrp, frame + 6, 6);
		*saddrlenp = 6;
	}
	if (recvp != NULL) {
		memset(recvp, 0, sizeof (*recvp));
		memcpy(recvp->dri_destaddr, frame, 6);
		recvp->dri_destaddrlen = 6;
		recvp->dri_destaddrtype = (frame[0] & 1) ?
		    DLPI_ADDRTYPE_GROUP : DLPI_ADDRTYPE_UNICAST;
		recvp->dri_totmsglen = len;
	}
	if (msgbuf != NULL) {
		if (len > *msglenp)
			len = *msglenp;
		memcpy(msgbuf, frame + off, len);
		*msglenp = len;
	}
	return (DLPI_SUCCESS);
}

static int
send_frame(dlpi_handle_t dh, const unsigned char *frame, size_t len)
{
	for (;;) {
		if (send(dh->fd, frame, len, 0) >= 0)
			return (DLPI_SUCCESS);
		if (errno == ENOBUFS || errno == EAGAIN) {
			usleep(50);
			continue;
		}
		return (DL_SYSERR);
	}
}

int
dlpi_send(dlpi_handle_t dh, const void *daddrp, size_t daddrlen,
    const void *msgbuf, size_t msglen, const dlpi_sendinfo_t *sendp)
{
	unsigned char frame[ETH_FRAME_LEN];
	size_t len;
	unsigned short type;

	if (dh == NULL)
		return (DLPI_EINHANDLE);
	if (injected_eintr(dh))
		return (DL_SYSERR);
	memset(frame, 0, sizeof (frame));
	if (dh->flags & DLPI_RAW) {
		/* The caller's whole frame; the destination is in it. */
		if (msgbuf == NULL || msglen < ETH_HLEN ||
		    msglen > ETH_FRAME_LEN)
			return (DLPI_EINVAL);
		memcpy(frame, msgbuf, msglen);
		len = msglen;
	} else {
		if (daddrp == NULL || daddrlen != 6 || msglen > ETH_DATA_LEN ||
		    (msglen > 0 && msgbuf == NULL))
			return (DLPI_EINVAL);
		memcpy(frame, daddrp, 6);
		memcpy(frame + 6, dh->mac, 6);
		type = htons((unsigned short)(sendp != NULL ?
		    sendp->dsi_sap : dh->sap));
		memcpy(frame + 12, &type, 2);
		if (msglen > 0)
			memcpy(frame + ETH_HLEN, msgbuf, msglen);
		len = ETH_HLEN + msglen;
	}
	/* The NIC pads short frames. */
	if (len < ETH_ZLEN)
		len = ETH_ZLEN;
	return (send_frame(dh, frame, len));
}

const char *
dlpi_strerror(int err)
{
	switch (err) {
	case DL_SYSERR:
		return (strerror(errno));
	case DL_NOTSUPPORTED:
		return ("primitive is known but unsupported");
	case DLPI_SUCCESS:
		return ("DLPI operation succeeded");
	case DLPI_EINVAL:
		return ("invalid argument");
	case DLPI_ELINKNAMEINVAL:
		return ("invalid DLPI linkname");
	case DLPI_ENOLINK:
		return ("DLPI link does not exist");
	case DLPI_EINHANDLE:
		return ("invalid DLPI handle");
	case DLPI_ETIMEDOUT:
		return ("DLPI operation timed out");
	case DLPI_FAILURE:
		return ("DLPI operation failed");
	default:
		return ("Unknown DLPI error");
	}
}

void
dlpi_close(dlpi_handle_t dh)
{
	if (dh == NULL)
		return;
	close(dh->fd);
	free(dh);
}
