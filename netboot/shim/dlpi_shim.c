/*
 * Test-only: the five libdlpi functions the illumos backend uses
 * (dlpi_open, dlpi_bind, dlpi_recv, dlpi_send, dlpi_close), implemented over
 * a Linux AF_PACKET socket with libdlpi's ordinary (non-raw) semantics:
 * sends take a destination address and a payload, receives return the
 * payload, the source address and the destination in dlpi_recvinfo_t.
 * Built only with netboot's `dlpi-shim` feature, so that the real-socket
 * tests run the DLPI wiring on Linux. Not part of any release binary.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define DLPI_SUCCESS 10000
#define DLPI_EINVAL 10001
#define DLPI_ENOLINK 10003
#define DLPI_EINHANDLE 10005
#define DLPI_ETIMEDOUT 10006
#define DLPI_FAILURE 10010
#define DL_SYSERR 0x04
#define DLPI_PHYSADDR_MAX 64

typedef enum { DLPI_ADDRTYPE_UNICAST, DLPI_ADDRTYPE_GROUP } dlpi_addrtype_t;

typedef struct {
	unsigned char dri_destaddr[DLPI_PHYSADDR_MAX];
	unsigned char dri_destaddrlen;
	dlpi_addrtype_t dri_destaddrtype;
	size_t dri_totmsglen;
} dlpi_recvinfo_t;

struct dlpi_impl {
	int fd;
	int ifindex;
	unsigned int sap;
	unsigned char mac[6];
};
typedef struct dlpi_impl *dlpi_handle_t;

int
dlpi_open(const char *linkname, dlpi_handle_t *dhp, unsigned int flags)
{
	struct ifreq ifr;
	struct dlpi_impl *h;
	int ifindex;

	(void) flags;
	if (linkname == NULL || dhp == NULL || strlen(linkname) >= IFNAMSIZ)
		return (DLPI_EINVAL);
	if ((ifindex = (int)if_nametoindex(linkname)) == 0)
		return (DLPI_ENOLINK);
	if ((h = calloc(1, sizeof (*h))) == NULL)
		return (DLPI_FAILURE);
	h->ifindex = ifindex;
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
dlpi_recv(dlpi_handle_t dh, void *saddrp, size_t *saddrlenp, void *msgbuf,
    size_t *msglenp, int msec, dlpi_recvinfo_t *recvp)
{
	unsigned char frame[ETH_FRAME_LEN + 64];
	struct sockaddr_ll from;
	socklen_t fromlen;
	struct pollfd pfd;
	ssize_t n;
	size_t len;
	int r;

	if (dh == NULL)
		return (DLPI_EINHANDLE);
	if (msglenp == NULL)
		return (DLPI_EINVAL);
	for (;;) {
		pfd.fd = dh->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		r = poll(&pfd, 1, msec);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return (DL_SYSERR);
		if (r == 0)
			return (DLPI_ETIMEDOUT);
		fromlen = sizeof (from);
		n = recvfrom(dh->fd, frame, sizeof (frame), MSG_DONTWAIT,
		    (struct sockaddr *)&from, &fromlen);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			return (DL_SYSERR);
		/* DLPI delivers neither our own frames nor other hosts'. */
		if (from.sll_pkttype == PACKET_OUTGOING ||
		    from.sll_pkttype == PACKET_OTHERHOST || n < ETH_HLEN)
			continue;
		break;
	}
	len = (size_t)n - ETH_HLEN;
	if (recvp != NULL) {
		memset(recvp, 0, sizeof (*recvp));
		memcpy(recvp->dri_destaddr, frame, 6);
		recvp->dri_destaddrlen = 6;
		recvp->dri_destaddrtype = (frame[0] & 1) ?
		    DLPI_ADDRTYPE_GROUP : DLPI_ADDRTYPE_UNICAST;
		recvp->dri_totmsglen = len;
	}
	if (saddrp != NULL && saddrlenp != NULL) {
		if (*saddrlenp < 6)
			return (DLPI_EINVAL);
		memcpy(saddrp, frame + 6, 6);
		*saddrlenp = 6;
	}
	if (len > *msglenp)
		len = *msglenp;
	if (msgbuf != NULL)
		memcpy(msgbuf, frame + ETH_HLEN, len);
	*msglenp = len;
	return (DLPI_SUCCESS);
}

int
dlpi_send(dlpi_handle_t dh, const void *daddrp, size_t daddrlen,
    const void *msgbuf, size_t msglen, const void *sendp)
{
	unsigned char frame[ETH_FRAME_LEN];
	size_t len = ETH_HLEN + msglen;
	unsigned short type;

	(void) sendp;
	if (dh == NULL)
		return (DLPI_EINHANDLE);
	if (daddrp == NULL || daddrlen != 6 || msglen > ETH_DATA_LEN)
		return (DLPI_EINVAL);
	memset(frame, 0, sizeof (frame));
	memcpy(frame, daddrp, 6);
	memcpy(frame + 6, dh->mac, 6);
	type = htons((unsigned short)dh->sap);
	memcpy(frame + 12, &type, 2);
	memcpy(frame + ETH_HLEN, msgbuf, msglen);
	if (len < ETH_ZLEN)
		len = ETH_ZLEN;
	for (;;) {
		if (send(dh->fd, frame, len, 0) >= 0)
			return (DLPI_SUCCESS);
		if (errno == EINTR)
			continue;
		if (errno == ENOBUFS || errno == EAGAIN) {
			usleep(50);
			continue;
		}
		return (DL_SYSERR);
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
