/*
 * gbcode_tables.c — the GB/T 28181 reference tables for the type code (digits
 * 11-13), the industry code (digits 9-10) and the network identifier
 * (digit 14, 2022 edition).  One copy, used by the accessors, the check
 * function and the vms.gb_device_type / vms.gb_industry views.
 */
#include "postgres.h"

#include "funcapi.h"
#include "utils/builtins.h"

#include "gbcode.h"

typedef struct NamedCode
{
	int			code;
	const char *en;
	const char *zh;
} NamedCode;

static const NamedCode device_types[] = {
	{111, "DVR", "DVR"},
	{112, "video server", "视频服务器"},
	{113, "encoder", "编码器"},
	{114, "decoder", "解码器"},
	{115, "video switching matrix", "视频切换矩阵"},
	{116, "audio switching matrix", "音频切换矩阵"},
	{117, "alarm controller", "报警控制器"},
	{118, "NVR", "网络视频录像机"},
	{120, "online capture system", "在线抓拍系统"},
	{121, "video checkpoint", "视频卡口"},
	{122, "multi-lens device", "多目设备"},
	{123, "parking entrance", "停车场出入口控制设备"},
	{124, "personnel entrance", "人员出入口控制设备"},
	{125, "security inspection device", "安检设备"},
	{130, "HVR", "混合硬盘录像机"},
	{131, "camera", "摄像机"},
	{132, "IPC", "网络摄像机"},
	{133, "monitor", "显示器"},
	{134, "alarm input", "报警输入设备"},
	{135, "alarm output", "报警输出设备"},
	{136, "voice input", "语音输入设备"},
	{137, "voice output", "语音输出设备"},
	{138, "mobile transmission device", "移动传输设备"},
	{139, "other peripheral", "其他外围设备"},
	{140, "alarm output relay", "报警输出继电器"},
	{141, "barrier gate", "道闸"},
	{142, "smart door", "智能门"},
	{143, "credential reader", "凭证识别单元"},
	{200, "central signalling server", "中心信令控制服务器"},
	{201, "web server", "Web应用服务器"},
	{202, "media distribution server", "媒体分发服务器"},
	{203, "proxy server", "代理服务器"},
	{204, "security server", "安全服务器"},
	{205, "alarm server", "报警服务器"},
	{206, "database server", "数据库服务器"},
	{207, "GIS server", "GIS服务器"},
	{208, "management server", "管理服务器"},
	{209, "access gateway", "接入网关"},
	{210, "media storage server", "媒体存储服务器"},
	{211, "signalling security routing gateway", "信令安全路由网关"},
	{215, "business group", "业务分组"},
	{216, "virtual organisation", "虚拟组织"},
	{500, "integrated application platform", "综合应用平台"},
	{501, "O&M platform", "运维管理平台"},
	{502, "video analysis platform", "视频分析平台"},
	{503, "view library", "视图库"},
	{505, "analysis device", "分析设备"},
};

static const NamedCode industries[] = {
	{0, "social security: road", "社会治安路面接入"},
	{1, "social security: community", "社会治安社区接入"},
	{2, "social security: internal", "社会治安内部接入"},
	{3, "social security: other", "社会治安其他接入"},
	{4, "traffic: road", "交通路面接入"},
	{5, "traffic: checkpoint", "交通卡口接入"},
	{6, "traffic: internal", "交通内部接入"},
	{7, "traffic: other", "交通其他接入"},
	{8, "city management", "城市管理接入"},
	{9, "health and environment", "卫生环保接入"},
	{10, "customs and inspection", "商检海关接入"},
	{11, "education", "教育部门接入"},
	{12, "civil aviation", "民航接入"},
	{13, "railway", "铁路接入"},
	{14, "shipping", "航运接入"},
	{40, "agriculture, forestry, fishery", "农林牧渔业接入"},
	{41, "mining", "采矿企业接入"},
	{42, "manufacturing", "制造企业接入"},
	{43, "utilities", "电力燃气水供应企业接入"},
	{44, "construction", "建筑企业接入"},
	{45, "retail", "批发零售企业接入"},
};

static const NamedCode *
find_named(const NamedCode *table, int n, int code)
{
	for (int i = 0; i < n; i++)
		if (table[i].code == code)
			return &table[i];
	return NULL;
}

/* 300-399 and 400-499 are whole ranges of user codes, not single entries. */
const char *
gbcode_type_name_en(int type)
{
	const NamedCode *e = find_named(device_types, lengthof(device_types), type);

	if (e)
		return e->en;
	if (type >= 300 && type <= 399)
		return "central user";
	if (type >= 400 && type <= 499)
		return "terminal user";
	return NULL;
}

const char *
gbcode_type_name_zh(int type)
{
	const NamedCode *e = find_named(device_types, lengthof(device_types), type);

	if (e)
		return e->zh;
	if (type >= 300 && type <= 399)
		return "中心用户";
	if (type >= 400 && type <= 499)
		return "终端用户";
	return NULL;
}

const char *
gbcode_industry_name_en(int industry)
{
	const NamedCode *e = find_named(industries, lengthof(industries), industry);

	return e ? e->en : NULL;
}

bool
gbcode_network_reserved(int network)
{
	return network == 9;
}

static Datum
named_table_srf(FunctionCallInfo fcinfo, const NamedCode *table, int n)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = Int32GetDatum(table[i].code);
		values[1] = CStringGetTextDatum(table[i].en);
		values[2] = CStringGetTextDatum(table[i].zh);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(gbcode_type_table);
Datum
gbcode_type_table(PG_FUNCTION_ARGS)
{
	return named_table_srf(fcinfo, device_types, lengthof(device_types));
}

PG_FUNCTION_INFO_V1(gbcode_industry_table);
Datum
gbcode_industry_table(PG_FUNCTION_ARGS)
{
	return named_table_srf(fcinfo, industries, lengthof(industries));
}
